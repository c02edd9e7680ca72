"""The sim x lmax tiles asset (all noise levels in one partition).

A run makes one partition, or a batch (a backfill's range, :data:`TILES_BATCH` per run): the
lmax of one sim are made together, each orientation rotated once for all of them, and the
sims are spread over the Dask cluster of the settings; each partition is recorded on its own
(:mod:`lensing_assets.defs.batch`).
"""

import warnings
from collections import defaultdict

import dagster as dg

from lensing_assets.defs.batch import DATA_POOL, TILES_BATCH, compute_batch, record_batch
from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.partitions import SIM_DIM, sim_lmax_of, sim_lmax_partitions_def
from lensing_core.batch import Call, tiles_call
from lensing_core.cluster import ClusterSettings
from lensing_core.products import TILES_CODE_VERSION
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # the mapping is beta in Dagster 1.13
    by_sim = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SIM_DIM)


def _tiles(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    tiling: dg.ResourceParam[TilingOptions],
    cluster: dg.ResourceParam[ClusterSettings],
) -> dg.MaterializeResult:
    """Twelve flat tiles per bin of one simulation at one lmax, for every noise level."""
    keys_by_sim: dict[int, dict[int, str]] = defaultdict(dict)
    for key in context.partition_keys:
        sim_id, lmax = sim_lmax_of(key)
        keys_by_sim[sim_id][lmax] = key
    calls = {
        sim_id: Call(
            tiles_call,
            (
                storage,
                sim_id,
                sorted(keys),
                tiling,
                f"Make them with: dagster asset materialize --select kappa_maps "
                f"--partition {sim_id}",
            ),
        )
        for sim_id, keys in keys_by_sim.items()
    }
    batch = compute_batch(context, calls, cluster)
    outcomes = {}
    for sim_id, keys in keys_by_sim.items():
        out = batch.outcomes[sim_id]
        for lmax, key in keys.items():
            outcomes[key] = out if isinstance(out, Exception) else out[lmax]
    return record_batch(context, outcomes, code_version=TILES_CODE_VERSION)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy is beta in Dagster 1.13
    tiles = dg.asset(
        name="tiles",
        partitions_def=sim_lmax_partitions_def,
        deps=[dg.AssetDep(kappa_maps, partition_mapping=by_sim)],
        group_name="tiles",
        kinds={"numpy"},
        code_version=TILES_CODE_VERSION,
        automation_condition=per_partition,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=TILES_BATCH),
        pool=DATA_POOL,
    )(_tiles)
