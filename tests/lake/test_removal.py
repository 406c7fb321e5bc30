"""delta-rs' storage options, as the S3 filesystem that deletes a rebuild's tables sees them."""

from __future__ import annotations

from typing import Any

import pytest

from lake.removal import _s3_filesystem, remove_lake
from lake.tables import Lake
from memlake.settings import LakeSettings


def _options(filesystem: Any) -> dict[str, Any]:
    _, (options,) = filesystem.__reduce__()
    return dict(options)


@pytest.mark.parametrize(
    "given",
    [
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
         "AWS_REGION": "eu-west-1", "AWS_SESSION_TOKEN": "t"},
        {"aws_endpoint": "http://127.0.0.1:9000", "access_key_id": "a", "secret_access_key": "b",
         "region": "eu-west-1", "token": "t"},
    ],
)  # fmt: skip
def test_delta_rs_option_names_in_either_spelling_reach_the_filesystem(given: dict[str, str]) -> None:
    options = _options(_s3_filesystem(given))
    assert (options["endpoint_override"], options["scheme"]) == ("127.0.0.1:9000", "http")
    assert (options["access_key"], options["secret_key"], options["session_token"]) == ("a", "b", "t")
    assert options["region"] == "eu-west-1"


def test_an_endpoint_without_a_scheme_is_https() -> None:
    options = _options(_s3_filesystem({"endpoint": "minio.internal:9000", "region": "us-east-1"}))
    assert (options["endpoint_override"], options["scheme"]) == ("minio.internal:9000", "https")


def test_a_store_it_cannot_delete_from_is_left_alone() -> None:
    assert remove_lake(Lake(LakeSettings(root="gs://bucket/lake/_rebuild/x"))) is False
