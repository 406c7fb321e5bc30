"""`memlake up | down | status`: the local Kafka broker and memlake's topics."""

from __future__ import annotations

import argparse
from typing import Any

from infra.broker import LocalBroker
from memlake.settings import Settings


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="start the local Kafka broker (KRaft) and create memlake's topics")
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop the local Kafka broker")
    down.set_defaults(run=_down)
    status = commands.add_parser("status", help="is the local broker running; topics and consumer lag")
    status.set_defaults(run=_status)


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics

    status = LocalBroker(settings.broker).up()
    print(status)
    created = ensure_topics(settings.kafka)
    for name in created:
        print(f"created topic {name}")
    return 0


def _down(settings: Settings, args: argparse.Namespace) -> int:
    stopped = LocalBroker(settings.broker).down()
    print("kafka stopped" if stopped else "kafka was not running")
    return 0


def _status(settings: Settings, args: argparse.Namespace) -> int:
    status = LocalBroker(settings.broker).status()
    print(status)
    return 0 if status.running else 3
