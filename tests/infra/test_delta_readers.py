"""infra/delta_readers: a reader's script runs with its library and settings, and a failed one says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.delta_readers import PolarsReader, SparkReader
from memlake.errors import DeltaReaderError

pytestmark = pytest.mark.integration


def test_a_script_runs_with_pyspark_and_the_delta_settings(spark: SparkReader, tmp_path: Path) -> None:
    script = tmp_path / "settings.py"
    script.write_text(
        "import os, sys, pyspark\n"
        "print(pyspark.__version__)\n"
        "print(sys.argv[1])\n"
        "print(os.environ['MEMLAKE_SPARK_CONF'])\n"
    )
    version, argument, conf = spark.run(script, "an argument").splitlines()
    assert version == "4.0.1"
    assert argument == "an argument"
    settings = json.loads(conf)
    assert settings == spark.conf()
    jars = settings["spark.jars"].split(",")
    assert [Path(jar).name for jar in jars] == ["delta-spark_2.13-4.0.0.jar", "delta-storage-4.0.0.jar"]
    assert all(Path(jar).is_file() for jar in jars)


def test_a_failed_script_raises_naming_its_status_and_the_log(spark: SparkReader, tmp_path: Path) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import sys\nprint('the reason', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(DeltaReaderError, match=r"fails\.py exited with status 3") as raised:
        spark.run(script)
    assert raised.value.log_file is not None
    assert "the reason" in Path(raised.value.log_file).read_text()


def test_a_script_past_its_time_is_stopped(spark: SparkReader, tmp_path: Path) -> None:
    script = tmp_path / "sleeps.py"
    script.write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(DeltaReaderError, match=r"sleeps\.py ran past 1 s"):
        spark.run(script, timeout_s=1)


def test_polars_scripts_find_polars_and_the_lake_s_own_packages(polars: PolarsReader, tmp_path: Path) -> None:
    script = tmp_path / "versions.py"
    script.write_text("import deltalake, polars\nprint(polars.__version__)\n")
    assert polars.run(script).strip() == "2.1.0"
