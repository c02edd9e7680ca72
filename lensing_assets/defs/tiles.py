"""The sim x lmax tiles asset (all noise levels in one partition)."""

import warnings

import dagster as dg

from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.metadata import materialized
from lensing_assets.defs.partitions import SIM_DIM, sim_lmax_of, sim_lmax_partitions_def
from lensing_core.io import InputMissingError
from lensing_core.products import TILES_CODE_VERSION, make_tiles
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # the mapping is beta in Dagster 1.13
    by_sim = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SIM_DIM)


@dg.asset(
    partitions_def=sim_lmax_partitions_def,
    deps=[dg.AssetDep(kappa_maps, partition_mapping=by_sim)],
    group_name="tiles",
    kinds={"numpy"},
    code_version=TILES_CODE_VERSION,
    automation_condition=per_partition,
)
def tiles(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    tiling: dg.ResourceParam[TilingOptions],
) -> dg.MaterializeResult:
    """Twelve flat tiles per bin of one simulation at one lmax, for every noise level."""
    sim_id, lmax = sim_lmax_of(context.partition_key)
    hint = f"Make them with: dagster asset materialize --select kappa_maps --partition {sim_id}"
    try:
        return materialized(make_tiles(storage, sim_id, lmax, tiling, missing_hint=hint))
    except InputMissingError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from None
