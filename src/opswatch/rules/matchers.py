"""Label matchers of a rule's selector: ``=``, ``!=``, ``=~`` and ``!~`` (fully anchored).

A label the sample lacks has the value ``""`` (as in PromQL), so ``{queue!="x"}`` matches a
sample without a ``queue`` label and ``{queue=""}`` selects exactly those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from opswatch.model import Labels, MatchOp


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """``name op value``; a regex is compiled once and must match the whole value."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = None
        if self.op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            regex = re.compile(self.value)  # re.error is the caller's to report
        object.__setattr__(self, "_regex", regex)

    def test(self, labels: Labels) -> bool:
        value = labels.get(self.name, "")
        op = self.op
        if op is MatchOp.EQUAL:
            return value == self.value
        if op is MatchOp.NOT_EQUAL:
            return value != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(value) is not None
        return found if op is MatchOp.REGEX else not found

    @property
    def text(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op.value}"{escaped}"'


def match_all(matchers: Sequence[LabelMatcher], labels: Labels) -> bool:
    """Whether every matcher holds for ``labels`` (true for no matchers)."""
    return all(matcher.test(labels) for matcher in matchers)


def selector_text(metric: str, matchers: Sequence[LabelMatcher]) -> str:
    """``metric{a="x",b=~"y.*"}`` (just ``metric`` without matchers)."""
    if not matchers:
        return metric
    return metric + "{" + ",".join(m.text for m in matchers) + "}"
