"""The docs stay true: every setting is listed, and the README's commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.settings_doc import env_name, render_section, section_fields
from memlake.settings import Settings

_REPO = Path(__file__).resolve().parents[1]
SETTINGS_MD = _REPO / "docs" / "settings.md"


def _sections(markdown: str) -> dict[str, str]:
    """Text under each `## name...` heading, merged by the heading's first word."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line[3:].split()[0].rstrip(":").lower()
            sections.setdefault(current, "")
        elif current is not None:
            sections[current] += line + "\n"
    return sections


FIELDS = [(section, field) for section in Settings.model_fields for field in section_fields(section)]


@pytest.mark.parametrize(("section", "field"), FIELDS, ids=[f"{s}.{f}" for s, f in FIELDS])
def test_every_setting_is_listed_under_its_section(section: str, field: str) -> None:
    text = _sections(SETTINGS_MD.read_text()).get(section, "")
    rows = [
        line
        for line in text.splitlines()
        if line.startswith(f"| `{field}` |") and f"`{env_name(section, field)}`" in line
    ]
    assert rows, f"docs/settings.md has no row for {section}.{field} under a '## {section}' heading"


def test_every_setting_has_a_description() -> None:
    missing = [f"{s}.{f}" for s, f in FIELDS if not section_fields(s)[f].description]
    assert missing == []


def test_the_generator_renders_every_field_with_its_default() -> None:
    table = render_section("broker")
    assert "| `home` | `MEMLAKE_BROKER_HOME` | `$MEMLAKE_HOME/kafka` |" in table
    assert "| `jars_dir` | `MEMLAKE_BROKER_JARS_DIR` | `~/.cache/memlake/kafka-jars` |" in table
    assert len(table.splitlines()) == 2 + len(section_fields("broker"))


def test_the_environment_names_in_the_docs_are_real() -> None:
    """A renamed field must not leave its old variable behind in the docs."""
    known = {env_name(s, f) for s, f in FIELDS}
    known |= {"MEMLAKE_HOME", "MEMLAKE_CACHE", "MEMLAKE_TEST_BROKER_PORT", "MEMLAKE_TEST_HOME"}
    documented = set(re.findall(r"`(MEMLAKE_[A-Z0-9_]+)`", SETTINGS_MD.read_text()))
    assert documented - known == set()


def test_readme_first_screen_shows_demo_and_test() -> None:
    first_screen = "\n".join((_REPO / "README.md").read_text().splitlines()[:25])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    makefile = (_REPO / "Makefile").read_text()
    for target in ("demo", "test", "bench", "up", "down", "lint"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
