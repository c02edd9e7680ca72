"""The per-sim kappa maps asset."""

import dagster as dg

from lensing_assets.defs.partitions import sim_partitions_def
from lensing_assets.defs.resources import KappaSourceResource, LensingStorage
from lensing_core.products import make_kappa


@dg.asset(partitions_def=sim_partitions_def, group_name="sims", kinds={"numpy", "healpix"})
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
