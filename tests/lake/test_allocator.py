"""delta-rs' allocator configuration: set before deltalake loads, the operator's own kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake.allocator import DELTA_MALLOC_CONF, configure_delta_allocator, delta_malloc_conf
from memlake.settings import LakeSettings

_REPO = Path(__file__).resolve().parents[2]


def test_the_decay_goes_into_jemallocs_configuration() -> None:
    assert delta_malloc_conf(LakeSettings()) == "background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:200"
    assert delta_malloc_conf(LakeSettings(allocator_decay_ms=0)) == (
        "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
    )
    assert delta_malloc_conf(LakeSettings(allocator_decay_ms=-1)) is None


def test_it_is_set_before_deltalake_loads() -> None:
    environ: dict[str, str] = {}
    said = configure_delta_allocator(LakeSettings(), environ, loaded=frozenset({"pyarrow"}))
    assert environ == {DELTA_MALLOC_CONF: delta_malloc_conf(LakeSettings())}
    assert said.startswith("set:")


def test_the_operators_own_configuration_wins() -> None:
    environ = {DELTA_MALLOC_CONF: "narenas:2"}
    said = configure_delta_allocator(LakeSettings(), environ, loaded=frozenset())
    assert environ == {DELTA_MALLOC_CONF: "narenas:2"}
    assert "left as set" in said


def test_once_deltalake_is_loaded_it_says_it_is_too_late() -> None:
    environ: dict[str, str] = {}
    said = configure_delta_allocator(LakeSettings(), environ, loaded=frozenset({"deltalake"}))
    assert environ == {}
    assert "too late" in said


def test_jemallocs_default_is_left_when_asked() -> None:
    environ: dict[str, str] = {}
    configure_delta_allocator(LakeSettings(allocator_decay_ms=-1), environ, loaded=frozenset())
    assert environ == {}


def test_the_settings_refuse_a_negative_decay_other_than_minus_one() -> None:
    with pytest.raises(ValueError, match="allocator_decay_ms"):
        LakeSettings(allocator_decay_ms=-5)


def test_the_memlake_command_sets_it_before_any_command_runs() -> None:
    """Through the real entry point: the command's process has it in its environment by
    the time a command runs (checked from inside that process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMLAKE_") and k != DELTA_MALLOC_CONF}
    env.update({"PYTHONPATH": str(_REPO), "MEMLAKE_LAKE_ALLOCATOR_DECAY_MS": "125"})
    probe = (
        "import os, sys\n"
        "import memlake.cli as cli\n"
        "def run(settings, args):\n"
        "    print(os.environ.get('_RJEM_MALLOC_CONF'), 'deltalake' in sys.modules)\n"
        "    return 0\n"
        "parser = cli.build_parser\n"
        "def build():\n"
        "    p = parser()\n"
        "    parse = p.parse_args\n"
        "    def parse_then_probe(argv=None):\n"
        "        args = parse(argv)\n"
        "        args.run = run\n"
        "        return args\n"
        "    p.parse_args = parse_then_probe\n"
        "    return p\n"
        "cli.build_parser = build\n"
        "sys.exit(cli.main(['status']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["background_thread:true,dirty_decay_ms:125,muzzy_decay_ms:125", "False"]
