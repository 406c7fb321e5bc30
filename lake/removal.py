"""Deleting a whole lake: a rebuild's fresh tables, once they have been compared.

delta-rs has no call that deletes a table, so the files go through the
filesystem: `shutil` for a local root, `pyarrow.fs.S3FileSystem` for an `s3://`
one, built from the same storage options delta-rs reads (its key names, in any
case, with or without the `aws_` prefix). Other object stores are left as they
are, and the caller says where.
"""

from __future__ import annotations

__all__ = ["remove_lake"]

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lake.tables import Lake
from memlake.errors import LakeError

# delta-rs' names for the options S3FileSystem takes, after lower-casing and dropping "aws_".
_S3_KEYS = {
    "access_key_id": "access_key",
    "secret_access_key": "secret_key",
    "session_token": "session_token",
    "token": "session_token",
    "region": "region",
    "default_region": "region",
}
_ENDPOINT_KEYS = ("endpoint_url", "endpoint")


def remove_lake(lake: Lake) -> bool:
    """Delete every file under the lake's root; False where the store is not one this can delete."""
    if lake.is_local:
        shutil.rmtree(Path(lake.root.removeprefix("file://")), ignore_errors=True)
        return True
    place = urlparse(lake.root)
    if place.scheme not in ("s3", "s3a"):
        return False
    filesystem = _s3_filesystem(lake.storage_options or {})
    try:
        filesystem.delete_dir(f"{place.netloc}{place.path}")
    except OSError as e:
        raise LakeError(lake.root, f"could not delete what lies under it: {e}") from e
    return True


def _s3_filesystem(options: Mapping[str, str]) -> Any:
    import pyarrow.fs as pafs

    named = {key.lower().removeprefix("aws_"): value for key, value in options.items()}
    settings: dict[str, Any] = {_S3_KEYS[k]: v for k, v in named.items() if k in _S3_KEYS}
    endpoint = next((named[k] for k in _ENDPOINT_KEYS if k in named), None)
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        settings["endpoint_override"] = host.rstrip("/")
        settings["scheme"] = scheme or "https"
    return pafs.S3FileSystem(**settings)
