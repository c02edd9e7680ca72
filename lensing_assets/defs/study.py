"""The study: the power-spectrum baseline, the Fisher forecast and the comparison report.

Per configuration (``LMAX|NOISE``): ``band_powers`` (the 10 auto and cross spectra of every
tile row of the shards), ``cl_fom_report`` (band powers compressed by an MLP, the same
Gaussian NPE recipe, the same FoM and calibration record as ``fom_report``, on the same split)
and ``fisher_forecast`` (pyccl theory of the source's n(z); needs no sims). ``study_report``
gathers every configuration that has results into one table and figure; those without are
shown as missing.
"""

# No `from __future__ import annotations`: Dagster reads the resource types from annotations.

import dagster as dg

from lensing_assets.defs.conditions import fan_in, rebuild_model
from lensing_assets.defs.dataset import tile_shards
from lensing_assets.defs.metadata import materialized
from lensing_assets.defs.models import GPU_POOL, missing_input
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_core.inference.config import TrainingSettings
from lensing_core.io import InputMissingError
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

FOM_REPORT_KEY = dg.AssetKey("fom_report")


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[tile_shards],
    group_name="study",
    kinds={"numpy"},
    code_version="band-powers-1",
    automation_condition=rebuild_model,
)
def band_powers(
    context: dg.AssetExecutionContext, storage: dg.ResourceParam[DataRoot]
) -> dg.MaterializeResult:
    """Band powers (10 spectra x 10 linear bands) of every tile row of one configuration."""
    from lensing_core.inference.power_spectrum import compute_band_powers

    lmax, noise = config_of(context.partition_key)
    try:
        result = compute_band_powers(storage, lmax, noise)
    except InputMissingError as err:
        raise missing_input(err, storage, str(context.partition_key), chain="cl") from None
    return materialized(result)


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[band_powers],
    group_name="study",
    kinds={"pytorch"},
    pool=GPU_POOL,
    code_version="cl-fom-report-1",
    automation_condition=rebuild_model,
)
def cl_fom_report(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    training: dg.ResourceParam[TrainingSettings],
) -> dg.MaterializeResult:
    """Power-spectrum FoM of one configuration: band powers -> MLP -> Gaussian NPE -> FoM.

    Same split, NPE settings, FoM and calibration record as ``fom_report``.
    """
    from lensing_core.inference.power_spectrum import cl_fom_report as make_report  # torch

    lmax, noise = config_of(context.partition_key)
    try:
        report = make_report(
            storage, lmax, noise, training.npe, split=training.split, device=training.device()
        )
    except InputMissingError as err:
        raise missing_input(err, storage, str(context.partition_key), chain="cl") from None
    return materialized(report)


@dg.asset(
    partitions_def=dataset_partitions_def,
    group_name="study",
    kinds={"pyccl"},
    code_version="fisher-1",
)
def fisher_forecast(
    context: dg.AssetExecutionContext,
    storage: dg.ResourceParam[DataRoot],
    kappa_source: dg.ResourceParam[KappaSource],
    tiling: dg.ResourceParam[TilingOptions],
) -> dg.MaterializeResult:
    """Fisher forecast of one tile's band powers: FoM marginalised and with the rest fixed."""
    from lensing_core.inference.fisher import fisher_report

    lmax, noise = config_of(context.partition_key)
    report = fisher_report(
        storage, lmax, noise, kappa_source, noise_convention=tiling.noise_convention
    )
    return materialized(report)


@dg.asset(
    deps=[FOM_REPORT_KEY, cl_fom_report, fisher_forecast],
    group_name="study",
    kinds={"json", "markdown"},
    code_version="study-1",
    automation_condition=fan_in,
)
def study_report(storage: dg.ResourceParam[DataRoot]) -> dg.MaterializeResult:
    """FoM against lmax: field level, power spectrum and Fisher, for every configuration.

    Configurations not built yet are shown as missing.
    """
    from lensing_core.inference.study import collect_study, write_study

    return materialized(write_study(storage, collect_study(storage)))


STUDY_ASSETS = [band_powers, cl_fom_report, fisher_forecast, study_report]
