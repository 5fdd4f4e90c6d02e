"""Evidence at fire time: the real process table."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from opswatch.model import Alert, AlertState, Severity
from opswatch.recovery.evidence import EvidenceCollector, EvidenceSettings

BURN = "import time\nprint('ready', flush=True)\nwhile True: pass\n"


def alert(check: str) -> Alert:
    now = datetime.now(UTC)
    return Alert("f00d", "cpu_high", check, {}, AlertState.FIRING, Severity.WARNING, "hot", 99.0,
                 now, now)  # fmt: skip


async def test_a_process_burning_cpu_tops_the_evidence_and_its_lines_say_so() -> None:
    burner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BURN, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert burner.stdout is not None
        await burner.stdout.readline()
        captured = await EvidenceCollector(EvidenceSettings()).capture([alert("host")])
        evidence = captured["f00d"]
        assert burner.pid in [p.pid for p in evidence.top_cpu[:2]]
        assert evidence.top_cpu[0].cpu_percent > 30
        assert len(evidence.top_memory) == 5
        lines = evidence.lines()
        assert lines[1] == "top processes by CPU:"
        assert any(f"pid {burner.pid} " in line for line in lines)
        assert evidence.to_json()["top_cpu"][0]["pid"] == evidence.top_cpu[0].pid
    finally:
        burner.kill()
        await burner.wait()


async def test_no_evidence_when_it_is_turned_off() -> None:
    collector = EvidenceCollector(EvidenceSettings(enabled=False))
    assert await collector.capture([alert("host")]) == {}
