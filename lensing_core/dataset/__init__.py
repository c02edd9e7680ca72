"""The training dataset: parquet shards per (lmax, noise level) and a Hugging Face revision.

Modules
-------
schema
    Configuration names, column names, the Arrow schema and ``datasets`` features: the one
    source of truth for what a row is.
parquet
    ``write_config_shards``: tile files of one configuration -> bounded, deterministic parquet
    shards, swapped into place atomically; ``ShardReport`` and the shard manifest.
hf
    The dataset card and the local revision in Hugging Face Hub layout, its content-derived
    revision id, offline loading and the optional push.
"""
