"""Asset checks on ``kappa_maps``, per sim partition: values, mean, variance order, spectra."""

import warnings
from collections.abc import Iterator

import dagster as dg

from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.metadata import markdown_image
from lensing_assets.defs.partitions import sim_partitions_def
from lensing_assets.defs.resources import KappaSourceResource, LensingStorage
from lensing_core.plotting import figure_to_png_bytes, spectra_figure
from lensing_core.storage import DataRoot
from lensing_core.validation import (
    CHECK_NAMES,
    ELL_MAX_CAP,
    ELL_MIN,
    MEAN_TOL_IN_STD,
    N_SIGMA,
    REL_TOL,
    KappaValidation,
    read_kappa_for_checks,
    theory_nz,
    validate_kappa_maps,
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


def _spectra_metadata(root: DataRoot, sim_id: int, validation: KappaValidation) -> dict:
    """The ratio table, the figure (embedded PNG) and the figure's file."""
    comparison, verdict = validation.comparison, validation.verdict
    if comparison is None or verdict is None:
        return {}
    labels = [f"ratio_{comparison.pair_label(k)}" for k in range(len(comparison.pairs))]
    schema = dg.TableSchema(
        columns=[dg.TableColumn("ell_lo", "int"), dg.TableColumn("ell_hi", "int")]
        + [dg.TableColumn(label, "float") for label in labels]
        + [dg.TableColumn("tolerance_min", "float")]
    )
    rows = [
        dg.TableRecord(
            {
                "ell_lo": int(comparison.edges[b]),
                "ell_hi": int(comparison.edges[b + 1]) - 1,
                **{label: round(float(r), 4) for label, r in zip(labels, ratios, strict=True)},
                "tolerance_min": round(float(verdict.tolerance[:, b].min()), 4),
            }
        )
        for b, ratios in enumerate(comparison.ratio.T)
    ]
    figure = spectra_figure(comparison, verdict, title=f"kappa_maps[{sim_id}]: spectra vs theory")
    png = figure_to_png_bytes(figure)
    path = root.write_bytes(root.spectra_plot_path(sim_id), png)
    return {
        "band_ratios": dg.MetadataValue.table(rows, schema),
        "plot": markdown_image(png, "spectra"),
        "plot_path": dg.MetadataValue.path(str(path)),
    }


@dg.multi_asset_check(specs=KAPPA_CHECK_SPECS, name="kappa_map_checks")
def kappa_map_checks(
    context: dg.AssetCheckExecutionContext,
    storage: LensingStorage,
    kappa_source: KappaSourceResource,
) -> Iterator[dg.AssetCheckResult]:
    """Validate one sim's kappa maps: values, mean, variance order, spectra against theory."""
    sim_id = int(context.partition_key)
    root = storage.data_root()
    maps, meta = read_kappa_for_checks(root, sim_id)
    nz = theory_nz(kappa_source.build())
    validation = validate_kappa_maps(maps, meta.get("params", {}), nz)
    extra = {"spectra_match_theory": _spectra_metadata(root, sim_id, validation)}
    for name, outcome in validation.outcomes.items():
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=kappa_maps.key,
            passed=outcome.passed,
            severity=SEVERITY[name],
            description=outcome.summary,
            metadata={**outcome.metadata, **extra.get(name, {})},
        )
