"""A local single-node Apache Kafka broker in KRaft mode, run from Maven Central jars.

`LocalBroker.up()` fetches the pinned `org.apache.kafka:kafka_2.13` jars with
Maven (once, cached), formats the storage on first start, starts
`kafka.Kafka` in its own session, and waits until the broker answers.
Starting twice reuses the running broker. Every failure names its cause and
the log file to read.
"""

from __future__ import annotations

__all__ = ["LocalBroker", "BrokerStatus"]

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.installs import maven_copy
from memlake.errors import BrokerError
from memlake.settings import BrokerSettings

_POM = Path(__file__).parent / "kafka" / "pom.xml"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.controller=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path
    data_dir: Path

    def __str__(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return f"kafka {state} at {self.bootstrap}; data {self.data_dir}; log {self.log_file}"


class LocalBroker:
    """Start, check and stop the local broker. The constructor does no I/O."""

    def __init__(self, settings: BrokerSettings) -> None:
        self._s = settings

    # --- paths -----------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self._s.host}:{self._s.port}"

    @property
    def jars(self) -> Path:
        return self._s.jars_dir / self._s.kafka_version

    @property
    def data_dir(self) -> Path:
        return self._s.home / "data"

    @property
    def log_file(self) -> Path:
        return self._s.home / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self._s.home / "broker.pid"

    @property
    def _config(self) -> Path:
        return self._s.home / "server.properties"

    # --- jars ------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Fetch the broker's jars with Maven into the cache, once per version."""
        log = self._s.home / "maven.log"
        fetched = maven_copy(_POM, self.jars, log=log, properties={"kafka.version": self._s.kafka_version})
        if not fetched or not any(self.jars.glob("kafka_2.13-*.jar")):
            wanted = f"org.apache.kafka:kafka_2.13:{self._s.kafka_version}"
            raise BrokerError(f"Maven could not fetch {wanted}", log_file=str(log))
        return self.jars

    # --- lifecycle -------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        return BrokerStatus(
            running=pid is not None and self.healthy(),
            pid=pid,
            bootstrap=self.bootstrap,
            log_file=self.log_file,
            data_dir=self.data_dir,
        )

    def up(self) -> BrokerStatus:
        """Start the broker, or reuse the one already running; return when it answers."""
        pid = self._running_pid()
        if pid is not None:
            self._wait_healthy(pid)
            return self.status()
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java is not on PATH; the Kafka broker needs Java 17 or newer")
        for port in (self._s.port, self._s.controller_port):
            if _port_taken(self._s.host, port):
                raise BrokerError(
                    f"port {port} on {self._s.host} is already taken by another process; "
                    "set MEMLAKE_BROKER_PORT / MEMLAKE_BROKER_CONTROLLER_PORT to free ones",
                    log_file=str(self.log_file),
                )
        jars = self.ensure_jars()
        self._write_config()
        classpath = f"{jars}/*"
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath)
        self._s.home.mkdir(parents=True, exist_ok=True)
        command = [
            java, f"-Xmx{self._s.heap}", f"-Xms{min_heap(self._s.heap)}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self._s.home / 'log4j.properties'}",
            "-cp", classpath, "kafka.Kafka", str(self._config),
        ]  # fmt: skip
        # Detached through a shell (its own session, reparented to init) so the broker
        # outlives `memlake up` and leaves no child process behind to reap.
        launched = subprocess.run(
            ["/bin/sh", "-c", f'exec "$@" >>"{self.log_file}" 2>&1 </dev/null & echo $!', "sh", *command],
            capture_output=True, text=True, check=True, start_new_session=True,
        )  # fmt: skip
        pid = int(launched.stdout.strip())
        self._pid_file.write_text(str(pid))
        self._wait_healthy(pid)
        return self.status()

    def down(self, *, timeout_s: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL). False when none was running."""
        pid = self._running_pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid)
        self._pid_file.unlink(missing_ok=True)
        return True

    def kill(self, *, timeout_s: float = 60.0) -> None:
        """SIGKILL the broker, as a crash would (for durability tests); return once it is gone.

        A process blocked in the kernel (an fsync on a busy disk) dies only when the call
        returns, so this waits for it rather than leaving its ports to a later `up`.
        """
        pid = self._running_pid()
        if pid is not None:
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(pid, timeout_s):
                raise BrokerError(
                    f"the Kafka broker (pid {pid}) is still alive {timeout_s:.0f} s after SIGKILL",
                    log_file=str(self.log_file),
                )
        self._pid_file.unlink(missing_ok=True)

    def healthy(self, timeout_s: float = 5.0) -> bool:
        """True when the broker answers a metadata request with itself as a live broker."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=int(timeout_s * 1000),
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    # --- internals -------------------------------------------------------------

    def _running_pid(self) -> int | None:
        try:
            pid = int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and _is_our_broker(pid) else None

    def _wait_healthy(self, pid: int) -> None:
        deadline = time.monotonic() + self._s.start_timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                self._pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    "the Kafka broker exited during start-up: " + _last_error(self.log_file),
                    log_file=str(self.log_file),
                )
            if _port_taken(self._s.host, self._s.port) and self.healthy(timeout_s=2.0):
                return
            time.sleep(0.5)
        raise BrokerError(
            f"the Kafka broker did not answer on {self.bootstrap} within {self._s.start_timeout_s:.0f} s",
            log_file=str(self.log_file),
        )

    def _write_config(self) -> None:
        self._s.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        host, port, cport = self._s.host, self._s.port, self._s.controller_port
        self._config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{host}:{cport}",
                    f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
                    f"advertised.listeners=PLAINTEXT://{host}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    # The log is the source of truth: topics keep everything unless told otherwise.
                    "log.retention.ms=-1",
                    # Durability on one node comes from fsync, not replicas: an acknowledged
                    # write must survive a SIGKILL of the broker.
                    "log.flush.interval.messages=1",
                    "",
                ]
            )
        )
        (self._s.home / "log4j.properties").write_text(_LOG4J)

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = _cluster_id()
        result = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id}", f"--config={self._config}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        with self.log_file.open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise BrokerError(
                "formatting the broker's storage failed: " + (result.stderr.strip() or result.stdout.strip()),
                log_file=str(self.log_file),
            )


def min_heap(heap: str) -> str:
    return "256m" if heap.endswith("m") and int(heap[:-1]) > 256 else heap


def _cluster_id() -> str:
    import base64

    # A url-safe id may begin with "-"; the caller passes it as --cluster-id=ID so
    # argparse never mistakes it for an option (a 1-in-32 flake seen in CI).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) is not alive. But the leader of a multi-threaded
    # process (the JVM) shows "Z" as soon as its own thread is gone, while the other
    # threads still run and hold its sockets: only a zombie with no threads left is dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
        if stat.rsplit(")", 1)[1].split()[0] == "Z" and threads <= 1:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _is_our_broker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file
    return b"kafka.Kafka" in cmdline


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    return not _alive(pid)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _last_error(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return "no log was written"
    for line in reversed(lines[-200:]):
        if "ERROR" in line or "Exception" in line:
            return line.strip()[:500]
    return lines[-1].strip()[:500] if lines else "the log is empty"
