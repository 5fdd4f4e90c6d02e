"""The rule kinds, by the ``kind`` their ``describe()`` gives. Explicit, no scanning.

``threshold``: the built-in pack (:mod:`opswatch.rules.builtin`), one metric against levels;
``expr``: user rules (:mod:`opswatch.rules.query`) parsed from the expression language of
:mod:`opswatch.rules.expr`, loaded by :mod:`opswatch.rules.sources`.
"""

from __future__ import annotations

from opswatch.rules.query import ExprRule
from opswatch.rules.threshold import ThresholdRule

RULE_KINDS: dict[str, type[ThresholdRule] | type[ExprRule]] = {
    "expr": ExprRule,
    "threshold": ThresholdRule,
}
