"""The automation: the sensors, and the nightly schedules that fill what is missing.

They run by default when the daemon runs (``dagster dev`` starts one), unless
``LENSING_AUTOMATION=off``; each can be stopped in the UI (Automation tab) or with
``dagster sensor stop`` / ``dagster schedule stop``. The discovery sensor is in
:mod:`lensing_assets.defs.inputs`.

``lensing_automation``
    Evaluates the assets' automation conditions (:mod:`lensing_assets.defs.conditions`)
    every 30 s. Dagster's own default automation sensor starts stopped; this one does not.
``fill_missing_*`` (kappa_maps, tiles, tile_shards, hf_dataset)
    Nightly (``LENSING_BACKFILL_CRON``, 02:00 by default), request every missing or failed
    partition of the data assets whose upstream is there: kappa maps of registered sims;
    tiles whose kappa maps exist; shards of an lmax with some tiles; the dataset revision.
    Each request is a run, throttled by the run queue of ``dagster.yaml``. Models are not
    trained by the schedules: ask for a configuration (UI, CLI or ``make demo``) and the
    automation keeps it up to date. (``build_schedule_from_partitioned_job`` rejects static
    multi-partitions, and one schedule targets one job, hence one schedule per asset.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from lensing_assets.defs.dataset import hf_dataset, tile_shards
from lensing_assets.defs.inputs import discovery_sensor
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.partitions import (
    SIMS_PARTITIONS,
    config_of,
    dataset_partitions_def,
    sim_lmax_of,
    sim_lmax_partitions_def,
    sim_partitions_def,
)
from lensing_assets.defs.tiles import tiles
from lensing_core.config import AutomationSettings

RETRY = (None, dg.AssetPartitionStatus.FAILED)  # missing or failed: request it


def _to_fill(
    instance: dg.DagsterInstance,
    asset: dg.AssetsDefinition,
    keys: Sequence[str],
    partitions_def: dg.PartitionsDefinition,
) -> list[str]:
    """Keys among *keys* that are missing or whose last run failed (not those in progress)."""
    status = instance.get_status_by_partition(asset.key, list(keys), partitions_def) or {}
    return [key for key in keys if status.get(key) in RETRY]


def missing_kappa(instance: dg.DagsterInstance) -> list[str]:
    """Registered sims whose kappa maps are missing or failed."""
    sims = instance.get_dynamic_partitions(SIMS_PARTITIONS)
    return _to_fill(instance, kappa_maps, sims, sim_partitions_def)


def missing_tiles(instance: dg.DagsterInstance) -> list[str]:
    """Tile partitions missing or failed whose kappa maps exist."""
    kappa_done = instance.get_materialized_partitions(kappa_maps.key)
    keys = [
        key
        for key in sim_lmax_partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if str(sim_lmax_of(key)[0]) in kappa_done
    ]
    return _to_fill(instance, tiles, keys, sim_lmax_partitions_def)


def missing_shards(instance: dg.DagsterInstance) -> list[str]:
    """Configurations whose shards are missing or failed while some tiles of their lmax exist."""
    lmax_with_tiles = {
        sim_lmax_of(key)[1] for key in instance.get_materialized_partitions(tiles.key)
    }
    keys = [
        key
        for key in dataset_partitions_def.get_partition_keys()
        if config_of(key)[0] in lmax_with_tiles
    ]
    return _to_fill(instance, tile_shards, keys, dataset_partitions_def)


def missing_hf_dataset(instance: dg.DagsterInstance) -> list[None]:
    """``[None]`` if the revision was never built, or its last run failed, and shards exist."""
    if not instance.get_materialized_partitions(tile_shards.key):
        return []
    records = instance.get_asset_records([hf_dataset.key])
    entry = records[0].asset_entry if records else None
    if entry is None or entry.last_materialization_record is None:
        return [None]
    failure = entry.last_failed_to_materialize_record
    failed_last = (
        failure is not None and failure.storage_id > entry.last_materialization_record.storage_id
    )
    return [None] if failed_last else []


def _fill_schedule(
    name: str,
    job_name: str,
    missing: Callable[[dg.DagsterInstance], Sequence[str | None]],
    cron: str,
    status: dg.DefaultScheduleStatus,
) -> dg.ScheduleDefinition:
    """A schedule of *job_name* at *cron* requesting the partitions ``missing(instance)``."""

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job_name=job_name,
        default_status=status,
        description=f"Requests every missing or failed partition of {job_name}'s asset "
        "whose upstream is there.",
    )
    def fill(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        keys = missing(context.instance)
        if not keys:
            return dg.SkipReason("nothing is missing or failed")
        tick = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")  # one run a night
        return [dg.RunRequest(run_key=f"{tick}/{key}", partition_key=key) for key in keys]

    return fill


def automation_defs(
    settings: AutomationSettings,
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """
    The sensors and schedules, running by default unless ``LENSING_AUTOMATION=off``.

    Returns
    -------
        ``[sim_discovery_sensor, lensing_automation]`` and the four ``fill_missing_*``
        schedules: one per data asset (a schedule targets one job, and the four assets have
        different partitions), all at ``settings.backfill_cron``.
    """
    on = settings.enabled
    sensor_status = dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED
    schedule_status = dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED
    lensing_automation = dg.AutomationConditionSensorDefinition(
        "lensing_automation",
        target=dg.AssetSelection.all(),
        default_status=sensor_status,
        minimum_interval_seconds=30,
        description="Evaluates the automation conditions of every asset (see defs/conditions.py).",
    )
    fills: list[tuple[str, str, Callable[[dg.DagsterInstance], Sequence[str | None]]]] = [
        ("fill_missing_kappa_maps", "kappa_job", missing_kappa),
        ("fill_missing_tiles", "tiles_job", missing_tiles),
        ("fill_missing_tile_shards", "shards_job", missing_shards),
        ("fill_missing_hf_dataset", "hf_dataset_job", missing_hf_dataset),
    ]
    schedules = [
        _fill_schedule(name, job, missing, settings.backfill_cron, schedule_status)
        for name, job, missing in fills
    ]
    return [discovery_sensor(sensor_status), lensing_automation], schedules
