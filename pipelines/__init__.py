"""Apache Beam jobs over the log and the lake.

`land` (Kafka offset ranges -> `events`), `materialize` (new events versions ->
the derived tables, through the kernel's fold), `rebuild` (replay the log into
fresh tables and compare), `follow` (land then materialize in micro-batches).
Each job is a `PTransform` plus a thin `run_*` function; runners and their
options come from `PipelineSettings` (DirectRunner by default). See docs/lake.md.
"""
