"""Jobs: one per asset of the main graph (used by `make demo` and the UI).

The training jobs carry the run tag ``lensing/resource=gpu``, which the run queue of
``dagster.yaml`` lets through one run at a time.
"""

from __future__ import annotations

import dagster as dg

from lensing_assets.defs.models import GPU_RUN_TAGS

JOBS = [
    dg.define_asset_job(
        "kappa_job", selection=["kappa_maps"], description="Kappa maps of one sim."
    ),
    dg.define_asset_job(
        "tiles_job", selection=["tiles"], description="Tiles of one sim at one lmax."
    ),
    dg.define_asset_job(
        "shards_job", selection=["tile_shards"], description="Parquet shards of one configuration."
    ),
    dg.define_asset_job(
        "hf_dataset_job", selection=["hf_dataset"], description="The local HF dataset revision."
    ),
    dg.define_asset_job(
        "compressor_job",
        selection=["compressor_model"],
        tags=GPU_RUN_TAGS,
        description="Train the compressor of one (lmax, noise level) configuration.",
    ),
    dg.define_asset_job(
        "npe_job",
        selection=["npe_model"],
        tags=GPU_RUN_TAGS,
        description="Train the Gaussian NPE of one configuration.",
    ),
    dg.define_asset_job(
        "fom_report_job",
        selection=["fom_report"],
        description="The FoM report of one configuration.",
    ),
]
