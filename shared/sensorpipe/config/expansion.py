"""``${VAR}`` / ``${VAR:-default}`` expansion anywhere inside string values.

The original expanded only whole-string placeholders (origin.md bug 11); here a
placeholder may sit inside a longer string and several may share one value. ``$${``
escapes a literal ``${``; any other ``${`` that is not a well-formed placeholder is an
error (a typo such as ``${ VAR}`` must not pass through as literal text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sensorpipe.config.errors import ConfigExpansionError

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$\{")


def expand_value(
    value: Any, env: Mapping[str, str], *, file: Path | str | None, key: str = ""
) -> Any:
    """Return ``value`` with every placeholder in every nested string replaced."""
    if isinstance(value, str):
        return _expand_string(value, env, file=file, key=key)
    if isinstance(value, dict):
        return {
            k: expand_value(v, env, file=file, key=f"{key}.{k}" if key else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_value(v, env, file=file, key=f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _expand_string(text: str, env: Mapping[str, str], *, file: Path | str | None, key: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise ConfigExpansionError(
                f"malformed placeholder at {text[match.start() : match.start() + 20]!r}",
                file=file,
                key=key or None,
                hint="write ${NAME} or ${NAME:-default}; $${ stands for a literal ${",
            )
        found = env.get(name)
        if found not in (None, ""):
            return str(found)
        if default is not None:
            return default
        raise ConfigExpansionError(
            f"environment variable {name} is not set and the placeholder has no default",
            file=file,
            key=key or None,
            hint=f"export {name}=... or write ${{{name}:-default}}",
        )

    return _PLACEHOLDER.sub(replace, text)
