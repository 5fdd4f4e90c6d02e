"""Capacity planning: the metric history (:mod:`.history`), its roll-ups and retention
(:mod:`.rollup`), robust trends and times to exhaustion (:mod:`.forecast`) and the resources
they are computed for (:mod:`.resources`)."""
