"""Apache Spark in local mode with Delta Lake's connector: the reference reader of the lake.

memlake writes its tables with delta-rs; the promise is that any Delta reader
reads them as they are. Spark with Delta's own connector is the reader the
protocol was written for, so tests read the lake through it (infra only: memlake
never needs Spark). PySpark (pinned; about 470 MB, with Spark's jars) is
installed from PyPI with `pip --target` into the cache beside the virtualenv,
and Delta's two jars come from Maven Central, both once. A script runs with
`SparkRunner.run`, in its own process with PySpark on its path and the session
settings of `SparkRunner.conf()` in `MEMLAKE_SPARK_CONF`. Java 17 or newer must
be on `PATH`. The constructor does no I/O.
"""

from __future__ import annotations

__all__ = ["SparkRunner", "PYSPARK_VERSION", "DELTA_VERSION"]

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from infra.installs import cache, maven_copy, pip_target
from memlake.errors import SparkError

PYSPARK_VERSION = "4.0.1"
DELTA_VERSION = "4.0.0"  # Delta's release for Spark 4.0 (Scala 2.13)
_POM = Path(__file__).parent / "spark" / "pom.xml"


class SparkRunner:
    """Install Spark and Delta's connector; run a PySpark script with the lake's session settings."""

    def __init__(self, home: Path) -> None:
        self._home = home

    @property
    def library(self) -> Path:
        return cache() / f"pyspark-{PYSPARK_VERSION}"

    @property
    def jars(self) -> Path:
        return cache() / f"delta-spark-{DELTA_VERSION}"

    @property
    def log_file(self) -> Path:
        return self._home / "spark.log"

    def ensure_installed(self) -> None:
        pip_log, maven_log = self._home / "pip.log", self._home / "maven.log"
        if not pip_target([f"pyspark=={PYSPARK_VERSION}"], self.library, log=pip_log):
            raise SparkError(f"pip could not install pyspark=={PYSPARK_VERSION}", log_file=str(pip_log))
        # Only Delta's own jars: Spark's come with PySpark, and two copies would clash.
        fetched = maven_copy(
            _POM,
            self.jars,
            log=maven_log,
            properties={"delta.version": DELTA_VERSION},
            extra=["-DexcludeTransitive=true"],
        )
        if not fetched:
            raise SparkError(
                f"Maven could not fetch io.delta:delta-spark_2.13:{DELTA_VERSION}", log_file=str(maven_log)
            )

    def conf(self) -> dict[str, str]:
        """A local session that reads (and writes) Delta; docs/lake.md gives the same for a cluster."""
        return {
            "spark.master": "local[2]",
            "spark.jars": ",".join(str(jar) for jar in sorted(self.jars.glob("*.jar"))),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # Timestamps as the lake keeps them: UTC instants, in microseconds.
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            # A small machine and small tables: Delta's default of 50 partitions to rebuild a
            # snapshot, and 200 for a shuffle, cost more than the reads themselves.
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.shuffle.partitions": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        }

    def run(self, script: Path, *args: str, timeout_s: float = 600.0) -> str:
        """Run `script` under PySpark; its standard output, or a `SparkError` naming the log."""
        self.ensure_installed()
        self._home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.library), str(Path(__file__).resolve().parents[1])]),
            "MEMLAKE_SPARK_CONF": json.dumps(self.conf()),
        }
        with self.log_file.open("ab") as log:
            # Its own session: PySpark starts a JVM beneath it, stopped with it on a timeout.
            process = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
            try:
                printed, _ = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired as e:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                problem = f"{script.name} ran past {timeout_s:.0f} s"
                raise SparkError(problem, log_file=str(self.log_file)) from e
        if process.returncode != 0:
            problem = f"{script.name} exited with status {process.returncode}"
            raise SparkError(problem, log_file=str(self.log_file))
        return printed.decode()
