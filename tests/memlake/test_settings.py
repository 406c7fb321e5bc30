"""Reading the settings from the environment at an entry point: a bad variable is named, not traced."""

from __future__ import annotations

import pytest

from memlake.cli import main
from memlake.errors import ConfigError
from memlake.settings import read_environment


def test_the_environment_sets_nested_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAKE_PIPELINES_BATCH_MAX_EVENTS", "1234")
    monkeypatch.setenv("MEMLAKE_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    settings = read_environment()
    assert settings.pipelines.batch_max_events == 1234
    assert settings.kafka.bootstrap == "k1:9092,k2:9092"


def test_a_bad_value_is_named_by_its_variable_with_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAKE_PIPELINES_BATCH_MAX_EVENTS", "abc")
    monkeypatch.setenv("MEMLAKE_KAFKA_REQUEST_TIMEOUT_MS", "10")
    with pytest.raises(ConfigError) as refused:
        read_environment()
    problem = refused.value.problem
    assert "MEMLAKE_PIPELINES_BATCH_MAX_EVENTS='abc': Input should be a valid integer" in problem
    assert "MEMLAKE_KAFKA_REQUEST_TIMEOUT_MS='10': Input should be greater than or equal to 1000" in problem


def test_a_variable_of_no_setting_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # A typo would otherwise leave the default in force.
    monkeypatch.setenv("MEMLAKE_LAKE_BUCKETSS", "3")
    with pytest.raises(ConfigError, match="MEMLAKE_LAKE_BUCKETSS='3': no such setting"):
        read_environment()


def test_what_may_be_a_credential_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAKE_KAFKA_SASL_PASSWORDS", "hunter2")
    with pytest.raises(ConfigError) as refused:
        read_environment()
    assert "MEMLAKE_KAFKA_SASL_PASSWORDS: no such setting" in refused.value.problem
    assert "hunter2" not in str(refused.value)


def test_the_command_line_says_it_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMLAKE_LAKE_BUCKETS", "many")
    assert main(["lake", "leases"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("memlake: error: setting 'environment': MEMLAKE_LAKE_BUCKETS='many': ")
    assert len(err.strip().splitlines()) == 1
