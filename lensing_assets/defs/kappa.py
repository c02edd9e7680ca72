"""The per-sim kappa maps asset and its checks."""

import warnings
from collections.abc import Iterator

import dagster as dg

from lensing_assets.defs.conditions import per_partition
from lensing_assets.defs.inputs import sim_inputs
from lensing_assets.defs.metadata import dagster_metadata, materialized
from lensing_assets.defs.partitions import sim_partitions_def
from lensing_core.products import KAPPA_CODE_VERSION, check_kappa, make_kappa
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


@dg.asset(
    partitions_def=sim_partitions_def,
    deps=[sim_inputs],
    group_name="sims",
    kinds={"numpy", "healpix"},
    code_version=KAPPA_CODE_VERSION,
    automation_condition=per_partition,
)
def kappa_maps(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    kappa_source: dg.ResourceParam[KappaSource],
    tiling: dg.ResourceParam[TilingOptions],
) -> dg.MaterializeResult:
    """Four tomographic convergence maps (HEALPix RING) of one simulation."""
    return materialized(make_kappa(storage, kappa_source, int(context.partition_key), tiling))


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

with warnings.catch_warnings():
    # Partitioned check specs are a preview feature in Dagster 1.13; they record each result
    # against its sim, which is what a check of one sim's maps means.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    KAPPA_CHECK_SPECS = [
        dg.AssetCheckSpec(
            name,
            asset=kappa_maps,
            description=DESCRIPTIONS[name],
            partitions_def=sim_partitions_def,
        )
        for name in CHECK_NAMES
    ]


@dg.multi_asset_check(specs=KAPPA_CHECK_SPECS, name="kappa_map_checks")
def kappa_map_checks(
    context: dg.AssetCheckExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    kappa_source: dg.ResourceParam[KappaSource],
) -> Iterator[dg.AssetCheckResult]:
    """Validate one sim's kappa maps: values, mean, variance order, spectra against theory."""
    checks = check_kappa(storage, kappa_source, int(context.partition_key))
    for name, outcome in checks.validation.outcomes.items():
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=kappa_maps.key,
            passed=outcome.passed,
            severity=SEVERITY[name],
            description=outcome.summary,
            metadata=dagster_metadata(checks.to_metadata(name)),
        )
