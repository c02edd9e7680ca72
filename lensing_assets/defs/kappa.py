"""The per-sim kappa maps asset."""

import time

import dagster as dg

from lensing_assets.defs.partitions import sim_partitions_def
from lensing_assets.defs.resources import KappaSourceResource, LensingStorage
from lensing_core.summaries import kappa_summary


@dg.asset(partitions_def=sim_partitions_def, group_name="sims", kinds={"numpy", "healpix"})
def kappa_maps(
    context: dg.AssetExecutionContext, storage: LensingStorage, kappa_source: KappaSourceResource
) -> dg.MaterializeResult:
    """Four tomographic convergence maps (HEALPix RING) of one simulation."""
    sim_id = int(context.partition_key)
    source = kappa_source.build()
    start = time.perf_counter()
    maps, provenance = source.load(sim_id)
    params = dict(source.catalog[sim_id])
    summary = kappa_summary(maps)
    path = storage.data_root().write_kappa(
        sim_id, maps, {"sim_id": sim_id, "params": params, "provenance": provenance, **summary}
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "size_mb": round(path.stat().st_size / 2**20, 1),
            "seconds": round(time.perf_counter() - start, 2),
            "source": provenance["source"],
            "provenance": provenance,
            "params": params,
            **summary,
        }
    )
