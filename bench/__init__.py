"""Benchmarks: ``python -m bench`` runs them all in quick mode (see bench/README.md)."""
