"""The per-sim kappa maps asset, with its checks in the same step.

A run makes one sim, or a batch of them (a backfill's range, :data:`KAPPA_BATCH` per run),
spread over the Dask cluster of the settings; each sim's maps and checks are recorded against
its own partition (:mod:`lensing_assets.defs.batch`). The checks run where the maps were made,
right after them; selecting only the checks re-runs them on the stored maps.
"""

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg

from lensing_assets.defs.batch import DATA_POOL, KAPPA_BATCH, compute_batch, record_batch
from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.inputs import sim_inputs
from lensing_assets.defs.metadata import dagster_metadata
from lensing_assets.defs.partitions import sim_partitions_def
from lensing_core.batch import Call, kappa_call, kappa_checks_call
from lensing_core.cluster import ClusterSettings
from lensing_core.products import KAPPA_CODE_VERSION
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot
from lensing_core.validation import (
    CHECK_NAMES,
    ELL_MAX_CAP,
    ELL_MIN,
    MEAN_TOL_IN_STD,
    N_SIGMA,
    REL_TOL,
)

SEVERITY = {name: dg.AssetCheckSeverity.WARN for name in CHECK_NAMES} | {
    "maps_finite": dg.AssetCheckSeverity.ERROR
}
DESCRIPTIONS = {
    "maps_finite": "No NaN or infinite pixel in any bin.",
    "mean_near_zero": f"|mean| < {MEAN_TOL_IN_STD:g} std in every bin (zero monopole).",
    "variance_increases_with_bin": "Standard deviation grows with the bin index.",
    "spectra_match_theory": (
        f"Auto and cross band powers within max({REL_TOL:.0%}, {N_SIGMA:g} sigma cosmic "
        f"variance) of the pyccl theory for the sim's parameters, "
        f"{ELL_MIN} <= ell <= min(nside / 2, {ELL_MAX_CAP})."
    ),
}

KAPPA_KEY = dg.AssetKey("kappa_maps")

with warnings.catch_warnings():
    # Partitioned check specs are a preview feature in Dagster 1.13; they record each result
    # against its sim, which is what a check of one sim's maps means.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    KAPPA_CHECK_SPECS = [
        dg.AssetCheckSpec(
            name,
            asset=KAPPA_KEY,
            description=DESCRIPTIONS[name],
            partitions_def=sim_partitions_def,
        )
        for name in CHECK_NAMES
    ]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            KAPPA_KEY,
            deps=[sim_inputs],
            group_name="sims",
            kinds={"numpy", "healpix"},
            code_version=KAPPA_CODE_VERSION,
            automation_condition=per_partition,
            description="Four tomographic convergence maps (HEALPix RING) of one simulation.",
        )
    ],
    check_specs=KAPPA_CHECK_SPECS,
    partitions_def=sim_partitions_def,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=KAPPA_BATCH),
    can_subset=True,
    name="kappa_maps",
    pool=DATA_POOL,
)
def kappa_maps(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    kappa_source: dg.ResourceParam[KappaSource],
    tiling: dg.ResourceParam[TilingOptions],
    cluster: dg.ResourceParam[ClusterSettings],
) -> Iterator[dg.MaterializeResult]:
    """Kappa maps of the run's sims, then their checks (or only the checks, if selected so)."""
    sims = [int(key) for key in context.partition_keys]
    make = KAPPA_KEY in context.selected_asset_keys
    fn = kappa_call if make else kappa_checks_call
    calls = {str(s): Call(fn, (storage, kappa_source, s, tiling)) for s in sims}
    batch = compute_batch(context, calls, cluster)
    checked = {key: out for key, out in batch.outcomes.items() if not isinstance(out, Exception)}
    for key, out in checked.items():
        for evaluation in _check_evaluations(key, out["checks"]):
            context.log_event(evaluation)
    if make:
        metadata = {
            key: out if isinstance(out, Exception) else out["metadata"]
            for key, out in batch.outcomes.items()
        }
        yield record_batch(context, metadata, code_version=KAPPA_CODE_VERSION)
    elif batch.failed:
        lines = "; ".join(f"sim {key}: {err}" for key, err in batch.failed.items())
        raise dg.Failure(description=f"the checks could not read the maps of {lines}")


def _check_evaluations(
    partition_key: str, checks: dict[str, dict[str, Any]]
) -> Iterator[dg.AssetCheckEvaluation]:
    """The evaluations of one sim's checks, recorded against its partition."""
    for name, check in checks.items():
        yield dg.AssetCheckEvaluation(
            asset_key=KAPPA_KEY,
            check_name=name,
            passed=check["passed"],
            severity=SEVERITY[name],
            description=check["summary"],
            metadata=dagster_metadata(check["metadata"]),
            partition=partition_key,
        )
