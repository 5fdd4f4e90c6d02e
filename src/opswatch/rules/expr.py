"""The rule expression language: a hand-written tokenizer and recursive-descent parser.

One rule is one line::

    rabbitmq.messages_ready{queue=~"orders.*"} > 1000 for 5m severity=warning clear 800
        labels team=payments summary="{queue} holds {value} messages"

Grammar (``[]`` optional, ``*`` repeated, ``|`` alternatives)::

    rule      = expression [compare] clause*
    expression= "absent" "(" selector ")" | operand ["/" operand]
    operand   = AGG ["by" "(" names ")"] "(" inner ")" | inner
    inner     = ("rate" | "increase") "(" selector "[" DURATION "]" ")"
              | "age" "(" selector ")" | selector
    selector  = NAME ["{" [matcher ("," matcher)*] "}"]
    matcher   = LABEL ("=" | "!=" | "=~" | "!~") STRING
    compare   = (">" | "<") (NUMBER | SEVERITY "=" NUMBER)
    clause    = "for" DURATION | "keep_firing_for" DURATION | "clear" ["="] NUMBER
              | "severity" "=" SEVERITY | SEVERITY "=" NUMBER
              | "labels" LABEL "=" VALUE ("," LABEL "=" VALUE)*
              | "summary" "=" STRING | "runbook" "=" STRING

``AGG`` is ``max``, ``min``, ``sum`` or ``avg``; ``SEVERITY`` is ``info``, ``warning``,
``critical`` or ``emergency``. A NUMBER may carry a duration unit (``26h`` is 93600). A
``clear`` belongs to the level written just before it. Nothing is evaluated here: the parser
gives a :class:`RuleExpr` or raises :class:`ExprError` with the 1-based column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from opswatch.config import MAX_DURATION
from opswatch.model import MatchOp, Severity
from opswatch.rules.matchers import LabelMatcher, selector_text

Function = Literal["value", "rate", "increase", "age"]
Aggregation = Literal["max", "min", "sum", "avg"]
Op = Literal[">", "<"]
TokenKind = Literal["number", "name", "string", "op", "end"]

_AGGREGATIONS: dict[str, Aggregation] = {"max": "max", "min": "min", "sum": "sum", "avg": "avg"}
_SEVERITIES = {s.value: s for s in Severity}
_FUNCTIONS: dict[str, Function] = {"rate": "rate", "increase": "increase", "age": "age"}
_FUNCTIONS_AND_ABSENT = {*_FUNCTIONS, "absent"}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d)?(?![A-Za-z0-9_.]))
  | (?P<bad>-?\d[A-Za-z0-9_.]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.:-]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>=~|!~|!=|>=|<=|[=<>{}()\[\],/])
    """,
    re.VERBOSE,
)
_KINDS: dict[str, TokenKind] = {"number": "number", "name": "name", "string": "string", "op": "op"}
_UNIT = re.compile(r"(.*?)(ms|s|m|h|d)?")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")
_MATCH_OPS = {op.value: op for op in MatchOp}


class ExprError(Exception):
    """A malformed rule: ``column`` is 1-based in the rule's text."""

    def __init__(self, column: int, problem: str) -> None:
        super().__init__(column, problem)
        self.column = column
        self.problem = problem

    def __str__(self) -> str:
        return f"column {self.column}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    column: int

    @property
    def shown(self) -> str:
        return "the end of the rule" if self.kind == "end" else repr(self.text)


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str
    matchers: tuple[LabelMatcher, ...] = ()

    @property
    def text(self) -> str:
        return selector_text(self.metric, self.matchers)


@dataclass(frozen=True, slots=True)
class Operand:
    """A selector, a function of each of its series, and an aggregation of the results."""

    selector: Selector
    function: Function = "value"
    window: float = 0.0
    aggregation: Aggregation | None = None
    by: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        inner = self.selector.text
        if self.function in ("rate", "increase"):
            inner = f"{self.function}({inner}[{seconds_text(self.window)}])"
        elif self.function == "age":
            inner = f"age({inner})"
        if self.aggregation is None:
            return inner
        by = f" by ({', '.join(self.by)})" if self.by else ""
        return f"{self.aggregation}{by} ({inner})"


@dataclass(frozen=True, slots=True)
class LevelExpr:
    severity: Severity
    threshold: float
    clear: float | None = None


@dataclass(frozen=True, slots=True)
class RuleExpr:
    """A parsed rule. ``absent`` rules have no ``op`` and no levels but their severity's."""

    left: Operand
    right: Operand | None = None
    absent: bool = False
    op: Op | None = None
    levels: tuple[LevelExpr, ...] = ()
    for_seconds: float = 0.0
    keep_firing_for: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    summary: str | None = None
    runbook: str | None = None
    #: where the levels begin in the text (for errors found after parsing)
    column: int = 1

    @property
    def text(self) -> str:
        """The whole rule, normalised: what ``check-config`` shows as parsed."""
        parts = [self.expression]
        if self.op is not None:
            parts.append(self.op)
        for level in self.levels if not self.absent else ():
            parts.append(f"{level.severity.value}={level.threshold:g}")
            if level.clear is not None:
                parts.append(f"clear {level.clear:g}")
        if self.for_seconds:
            parts.append(f"for {seconds_text(self.for_seconds)}")
        if self.keep_firing_for:
            parts.append(f"keep_firing_for {seconds_text(self.keep_firing_for)}")
        if self.absent:
            parts.append(f"severity={self.levels[0].severity.value}")
        if self.labels:
            parts.append("labels " + ", ".join(f"{k}={_quoted(v)}" for k, v in self.labels))
        for word, value in (("summary", self.summary), ("runbook", self.runbook)):
            if value is not None:
                parts.append(f"{word}={_quoted(value)}")
        return " ".join(parts)

    @property
    def expression(self) -> str:
        """The selection part, normalised (``absent(x)``, ``a / b``)."""
        if self.absent:
            return f"absent({self.left.selector.text})"
        if self.right is None:
            return self.left.text
        return f"{self.left.text} / {self.right.text}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        match = _TOKEN.match(text, index)
        if match is None:
            char = text[index]
            if char in "\"'":
                raise ExprError(index + 1, f"unterminated {char} string")
            raise ExprError(index + 1, f"unexpected character {char!r}")
        kind = _KINDS.get(match.lastgroup or "")
        if match.lastgroup == "bad":
            raise ExprError(index + 1, f"malformed number or duration {match.group()!r}")
        if kind is not None:
            tokens.append(Token(kind, match.group(), index + 1))
        index = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def parse(text: str) -> RuleExpr:
    """The rule in ``text``; raises :class:`ExprError` naming the column."""
    return _Parser(tokenize(text)).rule()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    # --- token helpers -----------------------------------------------------------------

    @property
    def _peek(self) -> Token:
        return self._tokens[self._index]

    def _next(self) -> Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _at(self, text: str, kind: str = "op") -> bool:
        token = self._peek
        return token.kind == kind and token.text == text

    def _expect(self, text: str, what: str | None = None) -> Token:
        token = self._next()
        if token.kind not in ("op", "name") or token.text != text:
            raise ExprError(token.column, f"expected {what or repr(text)}, got {token.shown}")
        return token

    def _number(self, what: str) -> float:
        token = self._next()
        if token.kind != "number":
            raise ExprError(token.column, f"expected {what}, got {token.shown}")
        return _number_value(token)

    def _duration(self, what: str) -> float:
        token = self._next()
        if token.kind != "number" or token.text.startswith("-"):
            raise ExprError(
                token.column, f"expected {what} such as 30s, 5m or 1h, got {token.shown}"
            )
        seconds = _number_value(token)
        if seconds > MAX_DURATION:
            raise ExprError(token.column, f"{what} must be at most 365d, got {token.text}")
        return seconds

    def _string(self, what: str) -> str:
        token = self._next()
        if token.kind != "string":
            raise ExprError(token.column, f"expected {what} in quotes, got {token.shown}")
        return _unquote(token.text)

    # --- grammar -----------------------------------------------------------------------

    def rule(self) -> RuleExpr:
        first = self._peek
        absent = first.kind == "name" and first.text == "absent" and self._lookahead("(")
        right: Operand | None = None
        if absent:
            self._next()
            self._expect("(")
            left = Operand(self._selector())
            self._expect(")")
        else:
            left = self._operand()
            if self._at("/"):
                self._next()
                right = self._operand()
        builder = _Clauses(absent)
        if self._peek.kind == "op" and self._peek.text in (">", "<", ">=", "<="):
            token = self._next()
            if absent:
                raise ExprError(token.column, "absent(...) takes no comparison, only 'for'")
            if token.text in (">=", "<="):
                raise ExprError(token.column, f"expected '>' or '<', got {token.text!r}")
            builder.op = ">" if token.text == ">" else "<"
            builder.column = token.column
            following = self._peek
            if following.kind == "name" and following.text in _SEVERITIES:
                self._level(builder)
            else:
                builder.add_level(Severity.WARNING, self._number("a threshold"), token.column)
                builder.default_severity = True
        while self._peek.kind != "end":
            self._clause(builder)
        return builder.build(left, right)

    def _lookahead(self, text: str) -> bool:
        following = self._tokens[self._index + 1]
        return following.kind == "op" and following.text == text

    def _operand(self) -> Operand:
        token = self._peek
        if (
            token.kind == "name"
            and token.text in _AGGREGATIONS
            and (self._lookahead("(") or self._lookahead_name("by"))
        ):
            self._next()
            aggregation = _AGGREGATIONS[token.text]
            by: tuple[str, ...] = ()
            if self._at("by", "name"):
                self._next()
                by = self._names()
            self._expect("(", "'(' after the aggregation")
            function, selector, window = self._inner()
            self._expect(")", "')' closing the aggregation")
            return Operand(selector, function, window, aggregation, by)
        function, selector, window = self._inner()
        return Operand(selector, function, window)

    def _lookahead_name(self, text: str) -> bool:
        following = self._tokens[self._index + 1]
        return following.kind == "name" and following.text == text

    def _names(self) -> tuple[str, ...]:
        self._expect("(", "'(' before the label names")
        names: list[str] = []
        while True:
            token = self._next()
            if token.kind != "name" or not _LABEL.match(token.text):
                raise ExprError(token.column, f"expected a label name, got {token.shown}")
            if token.text in names:
                raise ExprError(token.column, f"label {token.text!r} is listed twice")
            names.append(token.text)
            if self._at(","):
                self._next()
                continue
            self._expect(")", "',' or ')' in the label list")
            return tuple(names)

    def _inner(self) -> tuple[Function, Selector, float]:
        token = self._peek
        if token.kind != "name" or token.text not in _FUNCTIONS_AND_ABSENT:
            return "value", self._selector(), 0.0
        if not self._lookahead("("):
            return "value", self._selector(), 0.0
        if token.text == "absent":
            raise ExprError(token.column, "absent(...) must be the whole expression")
        function = _FUNCTIONS[token.text]
        self._next()
        self._expect("(")
        selector = self._selector()
        window = 0.0
        if function != "age":
            self._expect("[", f"'[' and a window after {function}'s selector")
            window = self._duration("a window")
            if window <= 0:
                raise ExprError(self._tokens[self._index - 1].column, "the window is 0")
            self._expect("]", "']' closing the window")
        self._expect(")", f"')' closing {function}(...)")
        return function, selector, window

    def _selector(self) -> Selector:
        token = self._next()
        if token.kind != "name" or not _METRIC.match(token.text):
            raise ExprError(token.column, f"expected a metric name, got {token.shown}")
        matchers: list[LabelMatcher] = []
        if self._at("{"):
            self._next()
            while not self._at("}"):
                matchers.append(self._matcher())
                if self._at(","):
                    self._next()
                elif not self._at("}"):
                    raise ExprError(
                        self._peek.column, f"expected ',' or '}}', got {self._peek.shown}"
                    )
            self._next()
        return Selector(token.text, tuple(matchers))

    def _matcher(self) -> LabelMatcher:
        name = self._next()
        if name.kind != "name" or not _LABEL.match(name.text):
            raise ExprError(name.column, f"expected a label name, got {name.shown}")
        op = self._next()
        if op.kind != "op" or op.text not in _MATCH_OPS:
            raise ExprError(
                op.column, f"expected =, !=, =~ or !~ after {name.text}, got {op.shown}"
            )
        value_token = self._peek
        value = self._string(f"the value of {name.text}")
        try:
            return LabelMatcher(name.text, _MATCH_OPS[op.text], value)
        except re.error as exc:
            raise ExprError(value_token.column, f"bad regex for {name.text}: {exc}") from None

    def _level(self, builder: _Clauses) -> None:
        token = self._next()
        self._expect("=", f"'=' after {token.text}")
        builder.add_level(_SEVERITIES[token.text], self._number("a threshold"), token.column)

    def _clause(self, builder: _Clauses) -> None:
        token = self._peek
        if token.kind != "name":
            raise ExprError(
                token.column, f"expected a clause (for, clear, labels, ...), got {token.shown}"
            )
        word = token.text
        if word in _SEVERITIES:
            if builder.absent:
                raise ExprError(token.column, "absent(...) has one level: use severity=")
            if builder.op is None and not builder.levels:
                builder.column = token.column
            self._level(builder)
            return
        self._next()
        if word == "for":
            builder.once(word, token.column)
            builder.for_seconds = self._duration("a duration")
        elif word == "keep_firing_for":
            builder.once(word, token.column)
            builder.keep_firing_for = self._duration("a duration")
        elif word == "clear":
            if self._at("="):
                self._next()
            builder.clear(self._number("a clear threshold"), token.column)
        elif word == "severity":
            builder.once(word, token.column)
            self._expect("=", "'=' after severity")
            value = self._next()
            if value.text not in _SEVERITIES:
                raise ExprError(
                    value.column,
                    f"expected info, warning, critical or emergency, got {value.shown}",
                )
            builder.severity(_SEVERITIES[value.text], token.column)
        elif word == "labels":
            builder.once(word, token.column)
            builder.labels = self._label_pairs()
        elif word in ("summary", "runbook"):
            builder.once(word, token.column)
            self._expect("=", f"'=' after {word}")
            setattr(builder, word, self._string(f"the {word}"))
        else:
            raise ExprError(
                token.column,
                f"unknown clause {word!r} (expected for, keep_firing_for, clear, severity, "
                "a severity level, labels, summary or runbook)",
            )

    def _label_pairs(self) -> tuple[tuple[str, str], ...]:
        pairs: dict[str, str] = {}
        while True:
            name = self._next()
            if name.kind != "name" or not _LABEL.match(name.text):
                raise ExprError(name.column, f"expected a label name, got {name.shown}")
            if name.text in pairs:
                raise ExprError(name.column, f"label {name.text!r} is given twice")
            self._expect("=", f"'=' after {name.text}")
            value = self._next()
            if value.kind not in ("name", "string", "number"):
                raise ExprError(
                    value.column, f"expected the value of {name.text}, got {value.shown}"
                )
            pairs[name.text] = _unquote(value.text) if value.kind == "string" else value.text
            if not self._at(","):
                return tuple(pairs.items())
            self._next()


class _Clauses:
    """What the clauses said so far; checks the rules between them."""

    def __init__(self, absent: bool) -> None:
        self.absent = absent
        self.op: Op | None = None
        self.levels: list[LevelExpr] = []
        self.default_severity = False
        self.for_seconds = 0.0
        self.keep_firing_for = 0.0
        self.labels: tuple[tuple[str, str], ...] = ()
        self.summary: str | None = None
        self.runbook: str | None = None
        self.column = 1
        self._seen: set[str] = set()
        self._severity_set = False

    def once(self, word: str, column: int) -> None:
        if word in self._seen:
            raise ExprError(column, f"{word!r} is given twice")
        self._seen.add(word)

    def add_level(self, severity: Severity, threshold: float, column: int) -> None:
        if any(level.severity == severity for level in self.levels):
            raise ExprError(column, f"the {severity} level is given twice")
        self.levels.append(LevelExpr(severity, threshold))

    def clear(self, value: float, column: int) -> None:
        if self.absent:
            raise ExprError(column, "absent(...) has no clear threshold")
        if not self.levels:
            raise ExprError(column, "'clear' must follow a threshold")
        last = self.levels[-1]
        if last.clear is not None:
            raise ExprError(column, f"the {last.severity} level's clear is given twice")
        self.levels[-1] = LevelExpr(last.severity, last.threshold, value)

    def severity(self, severity: Severity, column: int) -> None:
        if self.absent:
            self._severity_set = True
            self.levels = [LevelExpr(severity, 0.0)]
            return
        if not self.default_severity:
            raise ExprError(
                column, "severity= names the level of '> NUMBER'; write warning=N instead"
            )
        first = self.levels[0]
        if any(level.severity == severity for level in self.levels[1:]):
            raise ExprError(column, f"the {severity} level is given twice")
        self.levels[0] = LevelExpr(severity, first.threshold, first.clear)
        self.default_severity = False

    def build(self, left: Operand, right: Operand | None) -> RuleExpr:
        levels = self.levels
        if self.absent and not levels:
            levels = [LevelExpr(Severity.WARNING, 0.0)]
        return RuleExpr(
            left=left,
            right=right,
            absent=self.absent,
            op=self.op,
            levels=tuple(levels),
            for_seconds=self.for_seconds,
            keep_firing_for=self.keep_firing_for,
            labels=self.labels,
            summary=self.summary,
            runbook=self.runbook,
            column=self.column,
        )


def duration(text: str) -> float:
    """Seconds from one duration such as ``90s``, ``5m`` or ``1.5h`` (a bare number is
    seconds); raises :class:`ExprError`."""
    tokens = tokenize(text)
    if len(tokens) != 2 or tokens[0].kind != "number" or tokens[0].text.startswith("-"):
        raise ExprError(1, f"expected a duration such as 30s, 5m or 1h, got {text!r}")
    return _number_value(tokens[0])


def _number_value(token: Token) -> float:
    number, unit = _UNIT.fullmatch(token.text).groups()  # type: ignore[union-attr]
    return float(number) * (_UNITS[unit] if unit else 1.0)


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def seconds_text(seconds: float) -> str:
    """``300`` -> ``5m``, ``90`` -> ``90s`` (the largest unit that divides it)."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
