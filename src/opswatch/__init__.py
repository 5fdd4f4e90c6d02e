"""opswatch: watch a host and its services, fix what is safe to fix, page only when it matters."""

__version__ = "0.1.0"
