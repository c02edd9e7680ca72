"""Training data: parquet shards per (lmax, noise level) and the Hugging Face dataset revision."""

import warnings

import dagster as dg

from lensing_assets.defs.conditions import fan_in
from lensing_assets.defs.metadata import materialized
from lensing_assets.defs.partitions import LMAX_DIM, config_of, dataset_partitions_def
from lensing_assets.defs.tiles import tiles
from lensing_core.dataset.columns import CONTENT_HASH_VERSION
from lensing_core.dataset.hf import REVISION_ID_VERSION, HubTarget, publish_revision
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

SHARDS_CODE_VERSION = f"shards-1/{CONTENT_HASH_VERSION}"

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # the mapping is beta in Dagster 1.13
    # shards[600|des_y3] read tiles[s|600] of every sim s
    same_lmax = dg.MultiPartitionMapping(
        {LMAX_DIM: dg.DimensionPartitionMapping("lmax", dg.IdentityPartitionMapping())}
    )


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[dg.AssetDep(tiles, partition_mapping=same_lmax)],
    group_name="dataset",
    kinds={"parquet"},
    code_version=SHARDS_CODE_VERSION,
    automation_condition=fan_in,
)
def tile_shards(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    kappa_source: dg.ResourceParam[KappaSource],
    tiling: dg.ResourceParam[TilingOptions],
) -> dg.MaterializeResult:
    """Parquet shards of one (lmax, noise level) configuration: one row per tile of every sim."""
    # pyarrow and datasets: imported where used, so loading the code location stays light
    from lensing_core.dataset.parquet import write_config_shards

    lmax, noise = config_of(context.partition_key)
    catalog = kappa_source.catalog
    report = write_config_shards(
        storage,
        catalog,
        lmax,
        noise,
        catalog.sim_ids,
        scheme=tiling.scheme,
        noise_convention=tiling.noise_convention,
        noise_realizations=tiling.noise_realizations,
    )
    return materialized(report)


@dg.asset(
    deps=[tile_shards],
    group_name="dataset",
    kinds={"huggingface"},
    code_version=REVISION_ID_VERSION,
    automation_condition=fan_in,
)
def hf_dataset(
    storage: dg.ResourceParam[DataRoot],
    tiling: dg.ResourceParam[TilingOptions],
    hf_hub: dg.ResourceParam[HubTarget],
) -> dg.MaterializeResult:
    """The local Hugging Face dataset revision of every built configuration; pushed if set up."""
    return materialized(publish_revision(storage, tiling, hf_hub))
