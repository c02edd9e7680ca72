"""Training data: parquet shards per (lmax, noise level) and the Hugging Face dataset revision."""

import warnings

import dagster as dg

from lensing_assets.defs.conditions import fan_in
from lensing_assets.defs.partitions import LMAX_DIM, config_of, dataset_partitions_def
from lensing_assets.defs.resources import (
    HfHubResource,
    KappaSourceResource,
    LensingStorage,
    TilingResource,
)
from lensing_assets.defs.tiles import tiles
from lensing_core.dataset.hf import REVISION_ID_VERSION, push_revision, write_hf_revision
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.schema import CONTENT_HASH_VERSION

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
    storage: LensingStorage,
    kappa_source: KappaSourceResource,
    tiling: TilingResource,
) -> dg.MaterializeResult:
    """Parquet shards of one (lmax, noise level) configuration: one row per tile of every sim."""
    lmax, noise = config_of(context.partition_key)
    catalog = kappa_source.build().catalog
    report = write_config_shards(
        storage.data_root(),
        catalog,
        lmax,
        noise,
        catalog.sim_ids,
        scheme=tiling.scheme,
        noise_convention=tiling.noise_convention,
    )
    return dg.MaterializeResult(metadata=report.to_metadata())


@dg.asset(
    deps=[tile_shards],
    group_name="dataset",
    kinds={"huggingface"},
    code_version=REVISION_ID_VERSION,
    automation_condition=fan_in,
)
def hf_dataset(
    storage: LensingStorage, tiling: TilingResource, hf_hub: HfHubResource
) -> dg.MaterializeResult:
    """The local Hugging Face dataset revision of every built configuration; pushed if set up."""
    root = storage.data_root()
    revision = write_hf_revision(
        root.hf_dataset.dir,
        tmp_root=root.tmp_root,
        scheme=tiling.scheme,
        noise_convention=tiling.noise_convention,
    )
    pushed = push_revision(
        revision.path, repo_id=hf_hub.repo_id, token=hf_hub.token(), revision=revision.revision_id
    )
    return dg.MaterializeResult(
        metadata={
            "revision_id": revision.revision_id,
            "path": dg.MetadataValue.path(str(revision.path)),
            "configs": {name: r.rows for name, r in revision.configs.items()},
            "missing_configs": revision.missing_configs,
            "push": pushed.to_metadata(),
        }
    )
