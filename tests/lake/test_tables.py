"""What the lake says when its store fails: an outage (`StoreUnavailableError`) or not, in one line."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake.tables import Lake, lake_error
from memlake.errors import LakeError, StoreUnavailableError
from memlake.settings import LakeSettings
from tests.tcp_proxy import TcpProxy

# delta-rs 1.6's own text for a GET the store refused, colours and layout as it raised it.
_REFUSED = (
    "Kernel error -> Generic S3 error\n          \x1b[31m\u21b3\x1b[0m Error performing GET "
    "http://127.0.0.1:37973/b/t/_delta_log/_last_checkpoint in 258.47ms, after 2 retries, max_retries\n"
    "           \x1b[31m\u21b3\x1b[0m 2, retry_timeout\n            \x1b[31m\u21b3\x1b[0m 3s  - HTTP error\n"
    "             \x1b[31m\u21b3\x1b[0m error sending request\n"
    "              \x1b[31m\u21b3\x1b[0m client error (Connect)\n"
    "               \x1b[31m\u21b3\x1b[0m tcp connect error\n"
    "                \x1b[31m\u21b3\x1b[0m Connection refused (os error 111)\n"
)
_MISSING_BUCKET = (
    "Kernel error -> Generic S3 error: Error performing list request: Error performing GET "
    "http://127.0.0.1:29399/no-such-bucket?list-type=2 in 5.27ms - Server returned non-2xx status code: "
    "404 Not Found: <Error><Code>NoSuchBucket</Code></Error>"
)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (OSError(_REFUSED), True),
        (
            OSError(
                "Generic S3 error: Server returned non-2xx status code: 503 Service Unavailable: SlowDown"
            ),
            True,
        ),
        (OSError("Generic S3 error: Server returned non-2xx status code: 429 Too Many Requests"), True),
        (OSError("Generic S3 error: Error performing PUT http://s3/b/t: operation timed out"), True),
        (OSError(_MISSING_BUCKET), False),
        (OSError("Generic LocalFileSystem error: No space left on device (os error 28)"), False),
        (ValueError("Generic delta kernel error: No files in log segment"), False),
    ],
)
def test_only_a_store_that_did_not_answer_is_unavailable(error: Exception, unavailable: bool) -> None:
    raised = lake_error("memories", error)
    assert isinstance(raised, StoreUnavailableError) is unavailable
    assert isinstance(raised, LakeError)
    assert raised.table == "memories"


def test_a_store_error_reads_as_one_line_without_terminal_colours() -> None:
    raised = lake_error("events", OSError(_REFUSED))
    assert str(raised) == (
        "lake table 'events': OSError: Kernel error -> Generic S3 error: Error performing GET "
        "http://127.0.0.1:37973/b/t/_delta_log/_last_checkpoint in 258.47ms, after 2 retries, max_retries: "
        "2, retry_timeout: 3s  - HTTP error: error sending request: client error (Connect): "
        "tcp connect error: Connection refused (os error 111)"
    )


@pytest.mark.integration
def test_reads_and_writes_of_a_store_that_is_away_are_unavailable_and_go_on_once_it_is_back(
    cut_store: tuple[TcpProxy, LakeSettings],
) -> None:
    proxy, settings = cut_store
    lake = Lake(settings)
    lake.ensure("events")
    assert lake.has_change_feed("events", 0)
    proxy.down()
    calls = {
        "version": lambda: Lake(settings).version("events"),
        "table": lambda: lake.table("events"),
        "change feed": lambda: lake.has_change_feed("events", 0),
        "write": lambda: lake.write_to("events", lambda dt: dt.version()),
    }
    for what, call in calls.items():
        with pytest.raises(StoreUnavailableError, match="Connection refused") as raised:
            call()
        assert raised.value.table == "events", what
        assert "\n" not in str(raised.value), what
        assert "\x1b" not in str(raised.value), what
    proxy.up()
    assert lake.version("events") == 0
    assert lake.has_change_feed("events", 0)  # not taken for a vacuumed feed while the store was away
    assert isinstance(lake.table("events").to_pyarrow_table(), pa.Table)
