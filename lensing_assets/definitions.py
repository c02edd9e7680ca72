"""The Dagster Definitions of the lensing platform (``dagster ... -m lensing_assets``).

:func:`build_defs` makes them from settings; :func:`defs`, what Dagster loads, reads the
settings from the environment (once, when the code location loads) and registers the
configured suite's sims in the instance (:mod:`lensing_assets.defs.registration`).
"""

from __future__ import annotations

import dagster as dg

from lensing_assets.defs.automation import automation_defs
from lensing_assets.defs.batch import with_batch_policy
from lensing_assets.defs.dataset import hf_dataset, tile_shards
from lensing_assets.defs.executor import lensing_executor
from lensing_assets.defs.inputs import sim_inputs
from lensing_assets.defs.jobs import JOBS
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.models import build_model_assets
from lensing_assets.defs.registration import register_suite
from lensing_assets.defs.reports import fom_report
from lensing_assets.defs.resources import platform_resources
from lensing_assets.defs.study import STUDY_ASSETS
from lensing_assets.defs.tiles import tiles
from lensing_core.config import PlatformSettings


def build_defs(settings: PlatformSettings) -> dg.Definitions:
    """The platform's assets, checks, jobs, sensors, schedules and resources for *settings*."""
    sensors, schedules = automation_defs(settings.automation)
    return dg.Definitions(
        assets=[
            sim_inputs,
            with_batch_policy(kappa_maps, settings.automation.kappa_per_run),
            with_batch_policy(tiles, settings.automation.tiles_per_run),
            tile_shards,
            hf_dataset,
            *build_model_assets(settings.training),
            fom_report,
            *STUDY_ASSETS,
        ],
        jobs=JOBS,
        sensors=sensors,
        schedules=schedules,
        resources=platform_resources(settings),
        executor=lensing_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions for the ``LENSING_*`` settings of this process."""
    settings = PlatformSettings.from_env()
    definitions = build_defs(settings)
    register_suite(settings.kappa_source(), definitions)
    return definitions
