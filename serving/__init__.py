"""The serving tier: an HTTP API over a pinned snapshot of the lake.

Retrieval (embeddings, the Milvus index, BM25, fusion, filters), the memory
scheduler, generation, API keys and ACL checks. `serving.service` is the
entry point that wires the lake and the event log into the app.
"""
