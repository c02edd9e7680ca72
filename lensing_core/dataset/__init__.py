"""The training dataset: parquet shards per (lmax, noise level) and a Hugging Face revision.

Each configuration is written as bounded, deterministic parquet shards with a manifest, one
row per tile, swapped into place atomically; :mod:`lensing_core.dataset.schema` is the one
source of truth for what a row is. A revision adds the dataset card and a content-derived id
in Hugging Face Hub layout. For training, a configuration's tiles are loaded, split
deterministically and standardised with statistics of the compressor-train split only.
"""
