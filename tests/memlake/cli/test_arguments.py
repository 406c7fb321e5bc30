"""The command line's argument types: a bad value is a usage error that names what is wrong."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta, timezone

import pytest

from memlake.cli import arguments
from memlake.cli.events import register as register_events
from memlake.cli.governance import register as register_governance
from memlake.cli.lake import register as register_lake
from memlake.cli.serving import register as register_serving
from memlake.cli.training import register as register_training
from memlake.model import Actor, ActorKind


def test_a_timestamp_needs_iso_8601_and_a_timezone() -> None:
    assert arguments.timestamp("2026-01-01T12:00:00+02:00") == datetime(
        2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))
    )
    assert arguments.timestamp("2026-01-01T12:00:00Z") == datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="'2026-01-01T12:00:00' needs a timezone"):
        arguments.timestamp("2026-01-01T12:00:00")
    for bad in ("yesterday", "2026-13-01", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an ISO 8601 time"):
            arguments.timestamp(bad)


def test_as_of_is_a_version_from_0_or_a_timestamp() -> None:
    assert arguments.as_of("0") == 0
    assert arguments.as_of("12") == 12
    assert arguments.as_of("2026-01-01T00:00:00+00:00") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="versions start at 0"):
        arguments.as_of("-1")
    with pytest.raises(argparse.ArgumentTypeError, match="is not an ISO 8601 time"):
        arguments.as_of("v3")


def test_a_night_is_a_day_ending_at_its_last_second_in_utc() -> None:
    assert arguments.night("2026-02-28") == datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
    for bad in ("tomorrow", "2026-02-30", "11/27"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a day"):
            arguments.night(bad)


def test_a_cube_version_is_an_integer_from_1() -> None:
    assert arguments.cube_version("1") == 1
    with pytest.raises(argparse.ArgumentTypeError, match="cube versions start at 1"):
        arguments.cube_version("0")
    with pytest.raises(argparse.ArgumentTypeError, match="cube versions start at 1"):
        arguments.cube_version("-4")
    with pytest.raises(argparse.ArgumentTypeError, match="'three' is not a cube version"):
        arguments.cube_version("three")


def test_counts_start_at_1_and_durations_are_positive() -> None:
    assert arguments.count("3") == 3
    for bad, message in (("0", "give 1 or more"), ("-1", "give 1 or more"), ("x", "'x' is not a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            arguments.count(bad)
    assert arguments.seconds("0.5") == 0.5
    for bad, message in (
        ("0", "more than 0"),
        ("-2", "more than 0"),
        ("nan", "more than 0"),
        ("soon", "seconds"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            arguments.seconds(bad)


def test_a_port_runs_from_1_to_65535() -> None:
    assert arguments.port("8765") == 8765
    for bad in ("0", "65536", "99999"):
        with pytest.raises(argparse.ArgumentTypeError, match="ports run from 1 to 65535"):
            arguments.port(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="'http' is not a port number"):
        arguments.port("http")


def test_a_principal_is_kind_and_id_or_a_users_id() -> None:
    assert arguments.principal("system:nightly") == Actor(kind=ActorKind.SYSTEM, id="nightly")
    assert arguments.principal("alice") == Actor(kind=ActorKind.USER, id="alice")
    with pytest.raises(argparse.ArgumentTypeError, match="the kind 'robot' is none of user, agent"):
        arguments.principal("robot:r2")
    with pytest.raises(
        argparse.ArgumentTypeError, match="'a b' is not a principal's id: String should match"
    ):
        arguments.principal("a b")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a principal's id"):
        arguments.principal("user:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "c", "--as-of", "yesterday"], "argument --as-of: 'yesterday' is not an ISO 8601 time"),
        (
            ["show", "c", "--as-of", "2026-01-01T00:00:00"],
            "argument --as-of: '2026-01-01T00:00:00' needs a timezone",
        ),
        (["sql", "SELECT 1", "--as-of", "-2"], "argument --as-of: '-2': versions start at 0"),
        (["diff", "c", "0", "3"], "argument v1: '0': cube versions start at 1"),
        (["rollback", "c", "--to-version", "0"], "argument --to-version: '0': cube versions start at 1"),
        (["rollback", "c", "--to-version", "2", "--actor", "bad:x"], "argument --actor: 'bad:x': the kind"),
        (["audit", "c", "--since", "last week"], "argument --since: 'last week' is not an ISO 8601 time"),
        (["erase", "s", "--actor", "a b"], "argument --actor: 'a b' is not a principal's id"),
        (["erase", "s", "--wait", "-5"], "argument --wait: '-5': give more than 0 seconds"),
        (["tail", "--max", "-1"], "argument --max: '-1': give 1 or more"),
        (["ingest", "f.jsonl", "--actor", "bad:x"], "argument --actor: 'bad:x': the kind 'bad' is none of"),
        (["tail", "--idle", "0"], "argument --idle: '0': give more than 0 seconds"),
        (["dlq", "--last", "0"], "argument --last: '0': give 1 or more"),
        (["sql", "SELECT 1", "--limit", "-1"], "argument --limit: '-1': give 1 or more"),
        (["distill", "--all", "--night", "2026-02-30"], "argument --night: '2026-02-30' is not a day"),
        (["kv-cache", "--all", "--night", "11/27"], "argument --night: '11/27' is not a day"),
        (["serve", "--port", "99999"], "argument --port: '99999': ports run from 1 to 65535"),
    ],
)
def test_the_commands_refuse_bad_values_as_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="memlake")
    commands = parser.add_subparsers(dest="command", required=True)
    for register in (
        register_lake,
        register_governance,
        register_events,
        register_training,
        register_serving,
    ):
        register(commands)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
