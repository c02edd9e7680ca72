"""Jobs: kappa maps per sim and tiles per sim x lmax (used by `make demo` and the UI)."""

import dagster as dg

from lensing_assets.defs.dataset import hf_dataset, tile_shards
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.tiles import tiles

kappa_job = dg.define_asset_job(
    "kappa_job", selection=[kappa_maps], description="Kappa maps of one sim."
)
tiles_job = dg.define_asset_job(
    "tiles_job", selection=[tiles], description="Tiles of one sim at one lmax."
)
shards_job = dg.define_asset_job(
    "shards_job", selection=[tile_shards], description="Parquet shards of one configuration."
)
hf_dataset_job = dg.define_asset_job(
    "hf_dataset_job", selection=[hf_dataset], description="The local HF dataset revision."
)
