"""Deployment files (systemd unit, Dockerfile, compose) checked without deploying them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from opswatch.config import PREFIX, Env, Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "opswatch"
PLUGIN_AREAS = ("collectors", "notifiers", "recovery")


def unknown_variables(names: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``OPSWATCH_*`` names that no code reads.

    A core setting counts when ``Settings.from_env`` consults it; a plugin's variable
    (``OPSWATCH_<PLUGIN>_...``) when the plugin's module mentions it (``NAME_FILE`` counts as
    ``NAME``). A plugin whose module has not landed yet is not judged.
    """
    env = Env(dict(environ or {}))
    Settings.from_env(env, available_checks=("host",))
    unknown = []
    for name in sorted(set(names)):
        if not name.startswith(PREFIX):
            continue
        spellings = {name, name.removesuffix("_FILE")}
        if spellings & env.read:
            continue
        plugin = name.removeprefix(PREFIX).split("_", 1)[0].lower()
        modules = [SRC / area / f"{plugin}.py" for area in PLUGIN_AREAS]
        sources = [module.read_text(encoding="utf-8") for module in modules if module.exists()]
        if not sources:
            continue
        if not any(spelling in source for spelling in spellings for source in sources):
            unknown.append(name)
    return unknown
