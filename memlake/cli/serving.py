"""`memlake serve`, `memlake index rebuild`, `memlake keys create | list | revoke`."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from memlake.cli import arguments
from memlake.settings import Settings


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API over the current snapshot of the lake")
    serve.add_argument("--host", help="bind address (default: serving.host)")
    serve.add_argument("--port", type=arguments.port, help="bind port (default: serving.port)")
    serve.add_argument(
        "--embedded-pipeline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run land + materialize inside the service (default: serving.embedded_pipeline)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(run=_serve)

    index = commands.add_parser("index", help="the vector index of memories (derived from the lake)")
    index_commands = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    rebuild = index_commands.add_parser(
        "rebuild", help="drop the Milvus collection and fill it again from the lake's current snapshot"
    )
    rebuild.set_defaults(run=_rebuild)

    keys = commands.add_parser("keys", help="API keys of the serving tier (stored only hashed)")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="make a key acting as a principal; prints it once")
    create.add_argument("principal", help="who the key acts as, kind:id (user:alice, agent:planner)")
    create.add_argument("--name", default="", help="a note to tell keys apart")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=_create_key)
    listing = key_commands.add_parser("list", help="every key (never the secret)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_list_keys)
    revoke = key_commands.add_parser("revoke", help="revoke a key; a running service refuses it at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_revoke_key)


def _offline() -> None:
    # Models load from local files only; make the Hugging Face libraries agree.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from serving.service import serve

    _offline()
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.embedded_pipeline is not None:
        overrides["embedded_pipeline"] = args.embedded_pipeline
    if overrides:
        settings = settings.model_copy(update={"serving": settings.serving.model_copy(update=overrides)})
    serve(settings, log_level=args.log_level)
    return 0


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    _offline()
    from lake.tables import Lake
    from serving.keeper import SnapshotKeeper
    from serving.milvus import open_vector_index
    from serving.service import KafkaOffsetProbe, LakeSnapshotSource, build_embedder
    from streams.sealing import LocalKeyStore, Sealer

    lake = Lake(settings.lake)
    offsets = KafkaOffsetProbe(settings)
    source = LakeSnapshotSource(lake, topic=settings.kafka.events_topic, partitions=offsets.partitions)
    index = open_vector_index(settings.serving, settings.models)
    keeper = SnapshotKeeper(
        source,
        index,
        build_embedder(settings),
        opener=Sealer(LocalKeyStore(settings.governance.key_store)).open,
    )
    try:
        written = keeper.rebuild_index()
        version = keeper.current().version
    finally:
        index.close()
    print(
        f"indexed {written} memory versions from snapshot {version} into {settings.serving.milvus_collection}"
    )
    return 0


def _create_key(settings: Settings, args: argparse.Namespace) -> int:
    from serving.auth import ApiKeyStore

    issued = ApiKeyStore(settings.serving.api_keys_file).create(args.principal, name=args.name)
    if args.json:
        print(
            json.dumps({"key_id": issued.key.key_id, "principal": issued.key.principal, "key": issued.secret})
        )
    else:
        print(f"key {issued.key.key_id} for {issued.key.principal} (shown once, keep it safe):")
        print(issued.secret)
    return 0


def _list_keys(settings: Settings, args: argparse.Namespace) -> int:
    from serving.auth import ApiKeyStore

    keys = ApiKeyStore(settings.serving.api_keys_file).entries()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "key_id": k.key_id,
                        "principal": k.principal,
                        "name": k.name,
                        "created_at": k.created_at,
                        "revoked_at": k.revoked_at,
                    }
                    for k in keys
                ]
            )
        )
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        print(f"{k.key_id}  {k.principal:<32} {state:<40} {k.name}")
    return 0


def _revoke_key(settings: Settings, args: argparse.Namespace) -> int:
    from serving.auth import ApiKeyStore

    key = ApiKeyStore(settings.serving.api_keys_file).revoke(args.key_id)
    print(f"key {key.key_id} ({key.principal}) revoked at {key.revoked_at}")
    return 0
