"""Environment overrides of the pipeline config: ``SENSORPIPE__SECTION__KEY=value``.

Applied to the parsed file before validation, from the environment mapping the caller
passes (so a test or a tool can load a config without the process environment leaking
in). The environment wins over the file. A value that starts with ``[`` or ``{`` is read
as JSON (to replace a list or a mapping whole); anything else stays a string that the
typed model converts (``"5"`` -> 5, ``"true"`` -> True).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sensorpipe.config.errors import ConfigError

PREFIX = "SENSORPIPE__"


def _parse_value(name: str, raw: str, file: Path | str | None, key: str) -> Any:
    if raw.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"environment variable {name} looks like JSON but does not parse: {exc}",
                file=file,
                key=key,
            ) from None
    return raw


def apply_env_overrides(
    data: dict[str, Any], env: Mapping[str, str], *, file: Path | str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Return ``data`` with every override merged in, and {key path: variable name}."""
    merged = copy.deepcopy(data)
    sources: dict[str, str] = {}
    for name in sorted(env):
        if not name.upper().startswith(PREFIX) or len(name) == len(PREFIX):
            continue
        parts = [p.lower() for p in name[len(PREFIX) :].split("__")]
        key = ".".join(parts)
        if any(not p for p in parts):
            raise ConfigError(
                f"environment variable {name} has an empty key part",
                file=file,
                key=key,
                hint="join the key path with exactly two underscores",
            )
        node = merged
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"environment variable {name} reaches inside '{where}', which is "
                    f"a {type(child).__name__}, not a mapping",
                    file=file,
                    key=key,
                    hint=f"set the whole value as JSON: {PREFIX}{where.upper()}='[...]'",
                )
            node = child
        node[parts[-1]] = _parse_value(name, env[name], file, key)
        sources[key] = name
    return merged, sources
