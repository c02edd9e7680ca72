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
    Kappa maps and tiles are requested as partition ranges, as many partitions per run as a
    backfill of them would hold (:mod:`lensing_assets.defs.batch`); each request is a run,
    throttled by the run queue of ``dagster.yaml``. Models are not
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
from lensing_core.sky.tiles import LMAX_TO_NSIDE

RETRY = (None, dg.AssetPartitionStatus.FAILED)  # missing or failed: request it
#: The run tags of a partition range (what a backfill policy's runs carry).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def to_fill(
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
    return to_fill(instance, kappa_maps, sims, sim_partitions_def)


def missing_tiles(instance: dg.DagsterInstance) -> list[str]:
    """Tile partitions missing or failed whose kappa maps exist."""
    kappa_done = instance.get_materialized_partitions(kappa_maps.key)
    keys = [
        key
        for key in sim_lmax_partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if str(sim_lmax_of(key)[0]) in kappa_done
    ]
    return to_fill(instance, tiles, keys, sim_lmax_partitions_def)


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
    return to_fill(instance, tile_shards, keys, dataset_partitions_def)


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


def key_ranges(
    keys: Sequence[str], order: Sequence[str], max_per_run: int
) -> list[tuple[str, str]]:
    """
    *keys* as ``(first, last)`` ranges of consecutive keys of *order*.

    At most *max_per_run* keys each: the runs a backfill policy of that size would make.
    """
    wanted = set(keys)
    ranges: list[tuple[str, str]] = []
    run: list[str] = []
    for key in order:
        if key in wanted and len(run) < max_per_run:
            run.append(key)
            continue
        if run:
            ranges.append((run[0], run[-1]))
        run = [key] if key in wanted else []
    if run:
        ranges.append((run[0], run[-1]))
    return ranges


def tile_ranges(
    keys: Sequence[str], sims: Sequence[str], max_per_run: int
) -> list[tuple[str, str]]:
    """
    Missing tile keys as sim x lmax boxes, whole sims together.

    A range of a sim x lmax key is the box of its sims and its lmax. Sims missing the same
    consecutive lmax are put together, as many as fit *max_per_run* partitions, so that a run
    holds all the lmax of each of its sims (one rotation per orientation for all of them).
    """
    lmax_order = [str(lmax) for lmax in sorted(LMAX_TO_NSIDE)]
    missing_by_sim: dict[str, list[str]] = {}
    for key in keys:
        sim_id, lmax = sim_lmax_of(key)
        missing_by_sim.setdefault(str(sim_id), []).append(str(lmax))
    boxes: dict[tuple[str, str], list[str]] = {}  # (first lmax, last lmax) -> sims, in order
    for sim in sims:
        for first, last in key_ranges(missing_by_sim.get(sim, []), lmax_order, len(lmax_order)):
            boxes.setdefault((first, last), []).append(sim)
    ranges = []
    for (first, last), box_sims in boxes.items():
        width = lmax_order.index(last) - lmax_order.index(first) + 1
        for sim_a, sim_b in key_ranges(box_sims, sims, max(1, max_per_run // width)):
            ranges.append((f"{sim_a}|{first}", f"{sim_b}|{last}"))
    return ranges


def _fill_schedule(
    name: str,
    job_name: str,
    missing: Callable[[dg.DagsterInstance], Sequence[str | None]],
    cron: str,
    status: dg.DefaultScheduleStatus,
    ranges: Callable[[dg.DagsterInstance, Sequence[str]], list[tuple[str, str]]] | None = None,
) -> dg.ScheduleDefinition:
    """
    A schedule of *job_name* at *cron* requesting the partitions ``missing(instance)``.

    One run per key, or per range of ``ranges(instance, keys)`` if given.
    """

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
        if ranges is None:
            return [dg.RunRequest(run_key=f"{tick}/{key}", partition_key=key) for key in keys]
        return [
            dg.RunRequest(
                run_key=f"{tick}/{first}...{last}",
                tags={RANGE_START: first, RANGE_END: last},
            )
            for first, last in ranges(context.instance, [k for k in keys if k is not None])
        ]

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

    def kappa_ranges(instance: dg.DagsterInstance, keys: Sequence[str]) -> list[tuple[str, str]]:
        sims = instance.get_dynamic_partitions(SIMS_PARTITIONS)
        return key_ranges(keys, sims, settings.kappa_per_run)

    def tiles_ranges(instance: dg.DagsterInstance, keys: Sequence[str]) -> list[tuple[str, str]]:
        sims = instance.get_dynamic_partitions(SIMS_PARTITIONS)
        return tile_ranges(keys, sims, settings.tiles_per_run)

    schedules = [
        _fill_schedule(
            "fill_missing_kappa_maps",
            "kappa_job",
            missing_kappa,
            settings.backfill_cron,
            schedule_status,
            kappa_ranges,
        ),
        _fill_schedule(
            "fill_missing_tiles",
            "tiles_job",
            missing_tiles,
            settings.backfill_cron,
            schedule_status,
            tiles_ranges,
        ),
        _fill_schedule(
            "fill_missing_tile_shards",
            "shards_job",
            missing_shards,
            settings.backfill_cron,
            schedule_status,
        ),
        _fill_schedule(
            "fill_missing_hf_dataset",
            "hf_dataset_job",
            missing_hf_dataset,
            settings.backfill_cron,
            schedule_status,
        ),
    ]
    return [discovery_sensor(sensor_status), lensing_automation], schedules
