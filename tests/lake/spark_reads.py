"""Run by `infra.delta_readers.SparkReader`: read Delta tables with Spark, and write each read as Parquet.

Arguments: a JSON list of reads, each `{"name", "path", "options"}` (Spark's Delta
read options: `versionAsOf`, `readChangeFeed`, ...), and the folder to write them
to, one Parquet folder per read, named after it. Not a test module: it runs in
its own process, with PySpark on its path.
"""

from __future__ import annotations

import json
import os
import sys

from pyspark.sql import SparkSession


def main(reads: str, out: str) -> None:
    builder = SparkSession.builder.appName("memlake-delta-reads")
    for key, value in json.loads(os.environ["MEMLAKE_SPARK_CONF"]).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        for read in json.loads(reads):
            reader = spark.read.format("delta")
            for key, value in read["options"].items():
                reader = reader.option(key, value)
            reader.load(read["path"]).write.mode("overwrite").parquet(os.path.join(out, read["name"]))
            print(read["name"], flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
