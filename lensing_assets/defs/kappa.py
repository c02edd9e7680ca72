"""The per-sim kappa maps asset."""

import dagster as dg

from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.inputs import sim_inputs
from lensing_assets.defs.partitions import sim_partitions_def
from lensing_assets.defs.resources import KappaSourceResource, LensingStorage
from lensing_core.products import KAPPA_CODE_VERSION, make_kappa


@dg.asset(
    partitions_def=sim_partitions_def,
    deps=[sim_inputs],
    group_name="sims",
    kinds={"numpy", "healpix"},
    code_version=KAPPA_CODE_VERSION,
    automation_condition=per_partition,
)
def kappa_maps(
    context: dg.AssetExecutionContext, storage: LensingStorage, kappa_source: KappaSourceResource
) -> dg.MaterializeResult:
    """Four tomographic convergence maps (HEALPix RING) of one simulation."""
    sim_id = int(context.partition_key)
    path, meta = make_kappa(storage.data_root(), kappa_source.build(), sim_id)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "size_mb": round(path.stat().st_size / 2**20, 1),
            **meta,
        }
    )
