"""memlake's lake jobs reach nothing but this machine's loopback, traced with strace.

The machines memlake is built and tested on have no network but the package
registries. A library that reaches out at run time fails there, or elsewhere
runs something nobody tested: Beam's DirectRunner downloaded its Prism runner
from GitHub before every one-shot job, and an S3 client given no credentials
asks a cloud's metadata service for them. Every `connect()` of `memlake
materialize`, `rebuild --verify` and `sql`, in every process and thread they
start, must go to loopback or a local socket (a DNS query would show as one to
the resolver's address).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._lake_workload import generate
from memlake.settings import KafkaSettings
from tests.conftest import TEST_ONLY_ENVIRONMENT
from tests.pipelines.helpers import produce

pytestmark = pytest.mark.integration

_REPO = Path(__file__).resolve().parents[3]
_INET = re.compile(r'inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def _loopback(line: str) -> bool:
    """Whether a traced connect goes to loopback (or to a socket with no IP address)."""
    found = _INET.search(line) or _INET6.search(line)
    if found is None:
        return True
    address = ipaddress.ip_address(found.group(1))
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _outside(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if " connect(" in line and not _loopback(line)]


def _traced(args: list[str], env: dict[str, str], trace: Path) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is needed (Debian's package `strace`)"
    command = [strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", str(trace)]
    done = subprocess.run(
        [*command, sys.executable, "-m", "memlake", *args],
        env=env, cwd=_REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_materialize_rebuild_and_sql_connect_only_to_loopback(kafka: KafkaSettings, tmp_path: Path) -> None:
    produce(kafka, generate(300, cubes=3, seed=41))
    env = {name: value for name, value in os.environ.items() if name not in TEST_ONLY_ENVIRONMENT}
    env |= {
        "PYTHONPATH": str(_REPO),
        "MEMLAKE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MEMLAKE_KAFKA_EVENTS_TOPIC": kafka.events_topic,
        "MEMLAKE_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "MEMLAKE_LAKE_ROOT": str(tmp_path / "lake"),
        "MEMLAKE_PIPELINES_BATCH_MAX_EVENTS": "100",
    }
    for args in (["materialize"], ["rebuild", "--verify"], ["sql", "SELECT count(*) AS n FROM memories"]):
        trace = tmp_path / f"{args[0]}.trace"
        _traced(args, env, trace)
        assert _outside(trace) == [], args
        if args == ["materialize"]:
            # The trace does see the job's own connections: those to the broker.
            port = kafka.bootstrap.rsplit(":", 1)[1]
            assert f"sin_port=htons({port})" in trace.read_text()
