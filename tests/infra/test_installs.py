"""infra/installs: a finished install is kept, a failed one leaves nothing and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.installs import maven_copy, pip_target


def test_a_finished_install_is_not_run_again(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    (library / ".complete").touch()
    # A requirement pip could never install: it is not even asked.
    assert pip_target(["no such requirement ==="], library, log=tmp_path / "pip.log")
    assert not (tmp_path / "pip.log").exists()


def test_a_failed_pip_install_leaves_no_library(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    assert not pip_target(["not a requirement ==="], library, log=tmp_path / "pip.log")
    assert not library.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "pip.log"]  # and no staging folder
    assert "not a requirement" in (tmp_path / "pip.log").read_text()


def test_without_maven_the_log_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    pom = Path(__file__).resolve().parents[2] / "infra" / "spark" / "pom.xml"
    assert not maven_copy(pom, tmp_path / "jars", log=tmp_path / "maven.log")
    assert "Maven (mvn) is not on PATH" in (tmp_path / "maven.log").read_text()
    assert not (tmp_path / "jars").exists()
