"""A local S3-compatible object store, so that tests exercise an `s3://` lake for real.

No S3 service is reachable from the machines the tests run on, and no Docker
engine is there for MinIO: `moto`'s standalone server (pinned, installed from
PyPI with `pip --target` into the cache beside the virtualenv, once) speaks
the S3 HTTP API that delta-rs uses. It runs as its own process for the session,
and each test makes its own bucket. The constructor does no I/O.
"""

from __future__ import annotations

__all__ = ["LocalObjectStore", "MOTO_VERSION"]

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from infra.installs import cache, pip_target
from memlake.errors import ObjectStoreError

MOTO_VERSION = "5.2.5"


class LocalObjectStore:
    """Install, start and stop the store; make buckets and the storage options to reach them."""

    def __init__(self, home: Path, *, port: int, host: str = "127.0.0.1") -> None:
        self._home = home
        self._port = port
        self._host = host
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def log_file(self) -> Path:
        return self._home / "object-store.log"

    @property
    def library(self) -> Path:
        return cache() / f"moto-{MOTO_VERSION}"

    def ensure_installed(self) -> Path:
        """`moto[server]` in its own folder (not the virtualenv, whose key is the lock's hash)."""
        log = self._home / "pip.log"
        if not pip_target([f"moto[server]=={MOTO_VERSION}"], self.library, log=log):
            raise ObjectStoreError(f"pip could not install moto[server]=={MOTO_VERSION}", log_file=str(log))
        return self.library

    def up(self, *, timeout_s: float = 60.0) -> None:
        """Start the server and return once it answers."""
        library = self.ensure_installed()
        if self._answers():
            raise ObjectStoreError(f"port {self._port} on {self._host} already answers HTTP; pick another")
        self._home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(library)}
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self._host, "-p", str(self._port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ObjectStoreError("the object store exited during start-up", log_file=str(self.log_file))
            if self._answers():
                return
            time.sleep(0.3)
        self.down()
        raise ObjectStoreError(
            f"the object store did not answer in {timeout_s:.0f} s", log_file=str(self.log_file)
        )

    def down(self) -> None:
        if self._process is None:
            return
        # Its buckets live in its memory and go with it; it lingered 10 s after SIGTERM here.
        self._process.kill()
        self._process.wait()
        self._process = None

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"memlake-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            return name

    def storage_options(self) -> dict[str, str]:
        """What delta-rs needs for this endpoint: plain HTTP, any credentials, and commits
        made safe by S3's conditional put (If-None-Match), which the server implements."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "memlake",
            "AWS_SECRET_ACCESS_KEY": "memlake",
            "AWS_REGION": "us-east-1",
            "conditional_put": "etag",
        }

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False
