"""Jobs: one per asset of the main graph (used by `make demo` and the UI).

The training jobs carry the run tag ``lensing/resource=gpu``, which the run queue of
``dagster.yaml`` lets through one run at a time.
"""

from __future__ import annotations

import dagster as dg

from lensing_assets.defs.models import GPU_RUN_TAGS

#: The assets of one configuration that the study reads, in the order they are built.
CONFIG_STUDY_ASSETS = (
    "compressor_model",
    "npe_model",
    "fom_report",
    "band_powers",
    "cl_fom_report",
    "fisher_forecast",
)

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
    dg.define_asset_job(
        "band_powers_job",
        selection=["band_powers"],
        description="Band powers of every tile of one configuration.",
    ),
    dg.define_asset_job(
        "cl_report_job",
        selection=["cl_fom_report"],
        tags=GPU_RUN_TAGS,
        description="Power-spectrum compressor, NPE and FoM report of one configuration.",
    ),
    dg.define_asset_job(
        "fisher_job",
        selection=["fisher_forecast"],
        description="Fisher forecast of one configuration.",
    ),
    dg.define_asset_job(
        "study_config_job",
        selection=[*CONFIG_STUDY_ASSETS],
        tags=GPU_RUN_TAGS,
        description="Everything the study needs of one configuration whose shards exist: "
        "field compressor, NPE and FoM report, band powers and their FoM report, Fisher "
        "forecast (what the sweep requests).",
    ),
    dg.define_asset_job(
        "study_job",
        selection=["study_report"],
        description="The comparison report over every configuration.",
    ),
]
