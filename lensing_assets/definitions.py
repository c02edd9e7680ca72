"""The Dagster Definitions of the lensing platform (``dagster ... -m lensing_assets``)."""

import dagster as dg

from lensing_assets.defs.automation import fill_missing_schedules, lensing_automation
from lensing_assets.defs.checks import kappa_map_checks
from lensing_assets.defs.dataset import hf_dataset, tile_shards
from lensing_assets.defs.inputs import sim_discovery_sensor, sim_inputs
from lensing_assets.defs.jobs import (
    compressor_job,
    fom_report_job,
    hf_dataset_job,
    kappa_job,
    npe_job,
    shards_job,
    tiles_job,
)
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.models import compressor_model, npe_model
from lensing_assets.defs.partitions import SETTINGS
from lensing_assets.defs.reports import fom_report
from lensing_assets.defs.resources import resources_from
from lensing_assets.defs.tiles import tiles

defs = dg.Definitions(
    assets=[
        sim_inputs,
        kappa_maps,
        tiles,
        tile_shards,
        hf_dataset,
        compressor_model,
        npe_model,
        fom_report,
    ],
    asset_checks=[kappa_map_checks],
    jobs=[
        kappa_job,
        tiles_job,
        shards_job,
        hf_dataset_job,
        compressor_job,
        npe_job,
        fom_report_job,
    ],
    sensors=[sim_discovery_sensor, lensing_automation],
    schedules=fill_missing_schedules,
    resources=resources_from(SETTINGS),
)
