"""The sim x lmax tiles asset (all noise levels in one partition)."""

import time
import warnings

import dagster as dg

from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.partitions import SIM_DIM, sim_lmax_of, sim_lmax_partitions_def
from lensing_assets.defs.resources import LensingStorage, TilingResource
from lensing_core.io import InputMissingError
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import extract_tiles
from lensing_core.summaries import tile_summary


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
    root = storage.data_root()
    hint = f"Make them with: dagster asset materialize --select kappa_maps --partition {sim_id}"
    try:
        maps, kappa_meta = root.read_kappa(sim_id, missing_hint=hint)
    except InputMissingError as err:
        raise dg.Failure(description=str(err), allow_retries=False) from None
    start = time.perf_counter()
    by_key = extract_tiles(
        maps, [lmax], NOISE_LEVELS, scheme=tiling.scheme, seed=sim_id,
        noise_convention=tiling.noise_convention, n_iter=tiling.n_iter,
    )
    by_noise = {noise: by_key[lmax, noise] for noise in NOISE_LEVELS}
    summary = tile_summary(
        by_noise, lmax=lmax, nside_in=kappa_meta.get("nside", 0) or int((maps.shape[1] / 12) ** 0.5),
        scheme=tiling.scheme, convention=tiling.noise_convention,
    )
    meta = {"sim_id": sim_id, "lmax": lmax, "source": kappa_meta.get("provenance", {}), "params": kappa_meta.get("params", {})}
    path = root.write_tiles(sim_id, lmax, by_noise, {**meta, **summary})
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "seconds": round(time.perf_counter() - start, 2),
            **meta,
            **summary,
        }
    )
