"""Settings tables for docs/settings.md, generated from the Settings model.

`python -m infra.settings_doc kafka broker` prints the Markdown table of each
section named: one row per field with its environment variable, its default
(paths under `$MEMLAKE_HOME` or `~` written as such) and its description.
tests/test_docs.py checks that docs/settings.md lists every field.
"""

from __future__ import annotations

__all__ = ["render_section", "env_name", "section_fields"]

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from memlake.settings import Settings

_HOME = "/__memlake_home__"
_USER = "/__user_home__"


def env_name(section: str, field: str) -> str:
    return f"MEMLAKE_{section.upper()}_{field.upper()}"


def section_fields(section: str) -> dict[str, Any]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type)
    assert issubclass(annotation, BaseModel)
    return dict(annotation.model_fields)


@contextmanager
def _documented_homes() -> Iterator[None]:
    """Default factories read $MEMLAKE_HOME and ~: point both at markers while they run."""
    saved = {name: os.environ.get(name) for name in ("MEMLAKE_HOME", "HOME")}
    os.environ["MEMLAKE_HOME"] = _HOME
    os.environ["HOME"] = _USER
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _default(field: Any) -> str:
    if field.default_factory is not None:
        with _documented_homes():
            value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, Path):
        value = str(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace(_HOME, "$MEMLAKE_HOME").replace(_USER, "~")


def render_section(section: str) -> str:
    rows = [
        "| field | environment | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in section_fields(section).items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{env_name(section, name)}` | `{_default(field)}` | {description} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    sections = list(sys.argv[1:] if argv is None else argv) or list(Settings.model_fields)
    for section in sections:
        print(f"## {section}\n\n{render_section(section)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
