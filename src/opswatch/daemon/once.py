"""``opswatch once``: every check run once, rules judged on that one run, nothing sent.

Debounce is lifted (``for`` = one cycle) so the output answers "what would fire if this
persisted?"; nothing is stored and no notification is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses

from opswatch.daemon.app import App
from opswatch.daemon.configure import AppConfig
from opswatch.model import Finding, Sample
from opswatch.rules.base import AnyRule
from opswatch.rules.evaluator import RuleEvaluator
from opswatch.rules.query import ExprRule
from opswatch.rules.threshold import ThresholdRule


def _immediate(rule: AnyRule) -> AnyRule:
    if isinstance(rule, ThresholdRule):
        return dataclasses.replace(rule, for_cycles=1)
    if isinstance(rule, ExprRule) and not rule.expr.absent:
        return ExprRule(rule.name, dataclasses.replace(rule.expr, for_seconds=0.0))
    return rule


async def run_once(config: AppConfig) -> tuple[list[Sample], list[Finding]]:
    app = App(config)
    try:
        results = await asyncio.gather(*(app.cycle.collect(c) for c in config.collectors))
    finally:
        for collector in config.collectors:
            await collector.close()
    evaluator = RuleEvaluator([_immediate(rule) for rule in config.rules])
    samples: list[Sample] = []
    findings: list[Finding] = []
    for collector, (batch, _error) in zip(config.collectors, results, strict=True):
        samples.extend(batch)
        findings.extend(evaluator.evaluate(collector.check, batch).findings)
    return samples, findings
