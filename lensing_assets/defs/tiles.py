"""The sim x lmax tiles asset (all noise levels in one partition)."""

import warnings

import dagster as dg

from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.partitions import SIM_DIM, sim_lmax_of, sim_lmax_partitions_def
from lensing_assets.defs.resources import LensingStorage, TilingResource
from lensing_core.io import InputMissingError
from lensing_core.products import make_tiles

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # the mapping is beta in Dagster 1.13
    by_sim = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SIM_DIM)


@dg.asset(
    partitions_def=sim_lmax_partitions_def,
    deps=[dg.AssetDep(kappa_maps, partition_mapping=by_sim)],
    group_name="tiles",
    kinds={"numpy"},
)
def tiles(
    context: dg.AssetExecutionContext, storage: LensingStorage, tiling: TilingResource
) -> dg.MaterializeResult:
    """Twelve flat tiles per bin of one simulation at one lmax, for every noise level."""
    sim_id, lmax = sim_lmax_of(context.partition_key)
    hint = f"Make them with: dagster asset materialize --select kappa_maps --partition {sim_id}"
    try:
        path, meta = make_tiles(
            storage.data_root(),
            sim_id,
            lmax,
            scheme=tiling.scheme,
            noise_convention=tiling.noise_convention,
            n_iter=tiling.n_iter,
            missing_hint=hint,
        )
    except InputMissingError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from None
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), **meta})
