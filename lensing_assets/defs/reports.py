"""The figure-of-merit report per (lmax, noise level): ``fom_result.json`` and its figure."""

import dagster as dg

from lensing_assets.defs.conditions import rebuild_model
from lensing_assets.defs.metadata import materialized
from lensing_assets.defs.models import NPE_KEY, missing_input
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_core.inference.config import TrainingSettings
from lensing_core.io import InputMissingError
from lensing_core.storage import DataRoot


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[NPE_KEY],
    group_name="reports",
    kinds={"json"},
    code_version="fom-report-1",
    automation_condition=rebuild_model,
)
def fom_report(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    training: dg.ResourceParam[TrainingSettings],
) -> dg.MaterializeResult:
    """FoM of (Omega_m, S8) on the 12 tiles of the fiducial sim 109, with calibration."""
    from lensing_core.inference.pipeline import fom_report as make_fom_report  # torch

    lmax, noise = config_of(context.partition_key)
    try:
        report = make_fom_report(storage, lmax, noise, device=training.device())
    except InputMissingError as err:
        raise missing_input(err, storage, str(context.partition_key)) from None
    return materialized(report)
