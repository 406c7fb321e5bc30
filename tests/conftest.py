"""Shared fixtures. Integration tests share one real broker for the session
(started by infra/, stopped at the end unless it was already running), and those of
`s3://` lakes one local object store, and each builds its own topics, buckets,
tables and folders."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.broker import LocalBroker
from infra.delta_readers import PolarsReader, SparkReader
from infra.object_store import LocalObjectStore
from lake.tables import Lake
from memlake.settings import BrokerSettings, KafkaSettings, LakeSettings, Settings
from streams import consumer_pool
from streams.admin import TopicSpec, ensure_topics
from tests.tcp_proxy import TcpProxy

_REPO = Path(__file__).resolve().parents[1]
# Apart from a developer's own broker (19092) so that tests never touch it.
TEST_BROKER_PORT = int(os.environ.get("MEMLAKE_TEST_BROKER_PORT", "29092"))
TEST_OBJECT_STORE_PORT = int(os.environ.get("MEMLAKE_TEST_OBJECT_STORE_PORT", "29096"))
# A broker tests may stop, pause or kill: never the shared one.
PRIVATE_BROKER_PORT = int(os.environ.get("MEMLAKE_TEST_PRIVATE_BROKER_PORT", "39092"))


# Set for every test; a job in production runs without them.
TEST_ONLY_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads a developer's MEMLAKE_* settings, reaches a model hub, or asks a cloud's
    instance metadata service for credentials (an S3 client given none does, at 169.254.169.254)."""
    for name in list(os.environ):
        if name.startswith("MEMLAKE_") and name not in {"MEMLAKE_TEST_BROKER_PORT"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("MEMLAKE_HOME", str(tmp_path / "home"))
    for name, value in TEST_ONLY_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def _no_kafka_clients_outlive_the_test() -> Iterator[None]:
    """Pooled Kafka clients (streams.consumer_pool) are closed after every test: one kept past a
    test whose broker then stops keeps reconnecting in its own thread, with random back-off,
    and Hypothesis refuses tests during which the global `random` state moves."""
    yield
    consumer_pool.close_all()


def _services_home() -> Path:
    """Where the session's broker, object store and Delta readers keep their files and logs."""
    return Path(os.environ.get("MEMLAKE_TEST_HOME", _REPO / ".memlake-test"))


@pytest.fixture(scope="session")
def broker_settings() -> BrokerSettings:
    return BrokerSettings(
        home=_services_home() / "kafka",
        port=TEST_BROKER_PORT,
        controller_port=TEST_BROKER_PORT + 1,
    )


@pytest.fixture(scope="session")
def broker(broker_settings: BrokerSettings) -> Iterator[LocalBroker]:
    """The real Kafka broker (KRaft, from Maven Central jars)."""
    local = LocalBroker(broker_settings)
    was_running = local.status().running
    local.up()
    yield local
    if not was_running:
        local.down()


@pytest.fixture(scope="session")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of its own, on other ports with its home under a temporary folder, for the
    tests that stop, pause or kill one: the shared session broker is never touched. Each
    such test leaves it running."""
    settings = BrokerSettings(
        home=tmp_path_factory.mktemp("private-broker"),
        port=PRIVATE_BROKER_PORT,
        controller_port=PRIVATE_BROKER_PORT + 1,
        heap="512m",
    )
    broker = LocalBroker(settings)
    broker.up()
    yield broker
    broker.down()


@pytest.fixture
def quiet_kafka_client() -> Iterator[None]:
    """No log records from kafka-python during this test.

    While the broker is down the client logs each refused connection with the
    exception, whose traceback holds the client's unclosed socket (kafka-python
    3.0.12 does not close a socket whose connect() failed). Captured records would
    keep those sockets alive past the test, and they would surface later as
    unraisable ResourceWarnings in whichever test happens to collect them.
    """
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL + 1)
    yield
    kafka_logger.setLevel(level)


@pytest.fixture(scope="session")
def object_store() -> Iterator[LocalObjectStore]:
    """A real S3 API (moto's server, installed by infra/ once) for the session."""
    store = LocalObjectStore(_services_home() / "object-store", port=TEST_OBJECT_STORE_PORT)
    store.up()
    yield store
    store.down()


@pytest.fixture
def cut_store(object_store: LocalObjectStore) -> Iterator[tuple[TcpProxy, LakeSettings]]:
    """A new bucket reached through a proxy the test can cut (`down()`, `up()`), and a lake
    there whose store client gives up within seconds (by default it retries for minutes)."""
    proxy = TcpProxy(("127.0.0.1", int(object_store.endpoint.rsplit(":", 1)[1])))
    proxy.up()
    options = {
        **object_store.storage_options(),
        "AWS_ENDPOINT_URL": proxy.endpoint,
        "max_retries": "1",
        "retry_timeout": "2s",
        "connect_timeout": "1s",
    }
    yield proxy, LakeSettings(root=f"s3://{object_store.bucket()}/lake", storage_options=options)
    proxy.down()


@pytest.fixture(scope="session")
def spark() -> SparkReader:
    """Local Spark with Delta's connector (installed by infra/ once): the reference Delta reader."""
    reader = SparkReader(_services_home() / "spark")
    reader.ensure_installed()
    return reader


@pytest.fixture(scope="session")
def polars() -> PolarsReader:
    """Polars (installed by infra/ once), another Delta reader."""
    reader = PolarsReader(_services_home() / "polars")
    reader.ensure_installed()
    return reader


def own_topics(broker: LocalBroker, *, partitions: int = 6, create: bool = True) -> KafkaSettings:
    """Kafka settings naming events and dead-letter topics no other test uses.

    Created (and ready, see `ensure_topics`) unless `create` is False, for a test that
    watches the creation itself.
    """
    suffix = uuid.uuid4().hex[:10]
    settings = KafkaSettings(
        bootstrap=broker.bootstrap,
        events_topic=f"test.events.{suffix}",
        dlq_topic=f"test.dlq.{suffix}",
        partitions=partitions,
    )
    if create:
        ensure_topics(settings)
    return settings


@pytest.fixture
def kafka(broker: LocalBroker) -> KafkaSettings:
    """Kafka settings with this test's own events and dead-letter topics, created."""
    return own_topics(broker, partitions=6)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """A lake of this test's own under `tmp_path / "lake"`, with no broker: its tables are
    created on first use."""
    return Lake(LakeSettings(root=str(tmp_path / "lake")))


@pytest.fixture
def settings(kafka: KafkaSettings, tmp_path: Path) -> Settings:
    """A whole Settings object pointing at the test broker and folders of this test."""
    home = tmp_path / "home"
    return Settings(
        kafka=kafka,
        lake={"root": str(home / "lake")},
        serving={"milvus_uri": str(home / "milvus.db")},
        training={
            "mlflow_tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
            "artifacts_root": str(home / "artifacts"),
        },
        governance={"key_store": home / "keys"},
    )


def make_topic(kafka: KafkaSettings, name: str, partitions: int = 1) -> str:
    ensure_topics(kafka, [TopicSpec(name, partitions)])
    return name
