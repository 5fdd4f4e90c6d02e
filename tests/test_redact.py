"""The secret scrubber: what a configuration registers, and how text is scrubbed."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from opswatch import redact
from opswatch.config import Secret
from opswatch.daemon.configure import load_config


def test_with_nothing_registered_text_is_returned_as_it_is() -> None:
    text = "nothing to hide here"
    assert redact.scrub(text) is text
    event = {"event": "collect_finished", "check": "host"}
    assert redact.scrub_event(None, "info", event) is event


def test_values_shorter_than_four_characters_are_not_scrubbed() -> None:
    redact.register([Secret("abc"), Secret("abcd")])
    assert redact.scrub("abc abcd abcde") == "abc *** ***e"


def test_a_url_is_masked_whole_before_the_password_inside_it() -> None:
    url = "postgresql://ops:pg-pass-1@db:5432/state"
    redact.register([Secret(url)])
    assert redact.scrub(f"cannot connect to {url}") == "cannot connect to ***"
    assert redact.scrub("password pg-pass-1 refused") == "password *** refused"


def test_a_new_registration_replaces_the_values_before_it() -> None:
    redact.register([Secret("first-secret")])
    redact.register([Secret("second-secret")])
    assert redact.scrub("first-secret second-secret") == "first-secret ***"


def test_a_value_is_also_scrubbed_in_its_json_escaped_form() -> None:
    value = 'pa"ss\\wörd'
    redact.register([Secret(value)])
    assert redact.scrub(json.dumps({"error": f"bad {value}"})) == '{"error": "bad ***"}'


def test_the_configuration_registers_every_kind_of_secret(tmp_path: Path) -> None:
    load_config(
        {
            "OPSWATCH_STATE_PATH": str(tmp_path / "state.sqlite3"),
            "OPSWATCH_STATE_URL": "postgresql://opswatch:p%40ss-word@127.0.0.1:5432/test",
            "OPSWATCH_LEASE_URL": "redis://:lease-pw-9@127.0.0.1:6379/0",
            "OPSWATCH_API_TOKEN": "api-token-value",
            "OPSWATCH_WEBHOOK_URL": "http://127.0.0.1:9/hooks/T0K3N-path",
            "OPSWATCH_WEBHOOK_HEADERS": "Authorization: Bearer hdr-value-1; X-Api-Key: key-value-2",
            "OPSWATCH_HTTP_TARGETS": (
                "api=https://user:tgt-pass@127.0.0.1:9/health?token=query-tok&format=json,"
                "web=http://127.0.0.1:9/status"
            ),
            "OPSWATCH_RECOVERY_HTTP_DOWN": "webhook:https://127.0.0.1:9/jobs/rec-path-secret",
        }
    )
    hidden = [
        "p@ss-word",
        "p%40ss-word",
        "lease-pw-9",
        "api-token-value",
        "/hooks/T0K3N-path",
        "Bearer hdr-value-1",
        "key-value-2",
        "tgt-pass",
        "query-tok",
        "/jobs/rec-path-secret",
    ]
    assert [redact.scrub(value) for value in hidden] == ["***"] * len(hidden)
    # what is shown anyway stays readable: names, hosts, paths of checked URLs, options
    shown = "opswatch Authorization X-Api-Key /health json http://127.0.0.1:9/status /test"
    assert redact.scrub(shown) == shown


def test_scrub_output_scrubs_what_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    redact.register([Secret("printed-secret")])
    redact.scrub_output()
    redact.scrub_output()  # once is enough: not wrapped twice
    sys.stdout.write("error: printed-secret\n")
    sys.stderr.write("warning: printed-secret\n")
    assert capsys.readouterr() == ("error: ***\n", "warning: ***\n")


def test_a_scrubbed_stream_passes_through_what_holds_no_secret() -> None:
    redact.register([Secret("stream-secret")])
    inner = io.StringIO()
    stream = redact.ScrubbedStream(inner)
    assert stream.write("a stream-secret b") == len("a stream-secret b")
    stream.flush()
    assert inner.getvalue() == "a *** b"
    assert not stream.isatty()
