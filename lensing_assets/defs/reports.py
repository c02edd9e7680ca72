"""The figure-of-merit report per (lmax, noise level): ``fom_result.json`` and its figure."""

import dagster as dg

from lensing_assets.defs.conditions import rebuild_model
from lensing_assets.defs.metadata import markdown_image, metadata_table
from lensing_assets.defs.models import missing_input, npe_model
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_assets.defs.resources import LensingStorage, TrainingResource
from lensing_core.io import InputMissingError

_TABLE_FIELDS = (
    ("fom_fiducial_median", "median FoM of the 12 fiducial tiles"),
    ("fom_fiducial_std", "tile-to-tile std of the fiducial FoM"),
    ("fom_test_median", "median FoM of the test tiles"),
    ("fom_test_lo_16", "16th percentile, test tiles"),
    ("fom_test_hi_84", "84th percentile, test tiles"),
    ("fom_prior", "FoM of the prior (training parameters)"),
)


def fom_table(record: dict) -> dg.TableMetadataValue:
    """The FoM and calibration figures of one report as a metadata table."""
    calib = record["calibration"]
    rows = [(name, float(record[name]), what) for name, what in _TABLE_FIELDS]
    rows += [
        ("coverage_68", calib["coverage_68"], "test tiles inside their 68% ellipse"),
        ("coverage_95", calib["coverage_95"], "test tiles inside their 95% ellipse"),
    ]
    return metadata_table(
        {"quantity": "string", "value": "float", "meaning": "string"},
        [{"quantity": n, "value": v, "meaning": m} for n, v, m in rows],
    )


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[npe_model],
    group_name="reports",
    kinds={"json"},
    code_version="fom-report-1",
    automation_condition=rebuild_model,
)
def fom_report(
    context: dg.AssetExecutionContext, storage: LensingStorage, training: TrainingResource
) -> dg.MaterializeResult:
    """FoM of (Omega_m, S8) on the 12 tiles of the fiducial sim 109, with calibration."""
    from lensing_core.inference.pipeline import fom_report as make_fom_report  # torch

    lmax, noise = config_of(context.partition_key)
    root = storage.data_root()
    try:
        report = make_fom_report(root, lmax, noise, device=training.device())
    except InputMissingError as err:
        raise missing_input(err, root, str(context.partition_key)) from None
    r = report.record
    calib = r["calibration"]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(report.result_path)),
            "figure_path": dg.MetadataValue.path(str(report.figure_path)),
            "fom_fiducial_median": r["fom_fiducial_median"],
            "fom_fiducial_std": r["fom_fiducial_std"],
            "fom_prior": r["fom_prior"],
            "coverage_68": calib["coverage_68"],
            "coverage_95": calib["coverage_95"],
            "n_test": calib["n_test"],
            "fom": fom_table(r),
            "fom_fiducial_all": r["fom_fiducial_all"],
            "r2_test": r["r2_test"],
            "figure": markdown_image(report.figure_png, "FoM report"),
        }
    )
