"""Automation against a test instance: what is requested after which change.

The events a run would record are reported directly (``report_runless_asset_event``), and
the conditions are evaluated tick by tick with ``dg.evaluate_automation_conditions``, the
function the automation sensor calls. The discovery sensor and the schedules are evaluated
with Dagster's test contexts.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from lensing_assets import build_defs
from lensing_assets.defs.automation import (
    RANGE_END,
    RANGE_START,
    missing_hf_dataset,
    missing_kappa,
    missing_shards,
    missing_tiles,
)
from lensing_assets.defs.partitions import SIMS_PARTITIONS
from lensing_assets.defs.resources import platform_resources
from lensing_assets.defs.tiles import tiles
from lensing_core.config import PlatformSettings
from lensing_core.sims.sources import SourceSettings
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE
from tests.fixtures.dagster import settings_for

SIMS = ("1", "2", "3")
NIGHT = datetime.datetime(2026, 11, 22, 2, 0, tzinfo=datetime.UTC)
LMAX = [str(lmax) for lmax in LMAX_TO_NSIDE]
CONFIGS = [f"{lmax}|{noise}" for lmax in LMAX for noise in NOISE_LEVELS]


@pytest.fixture
def defs(test_defs: dg.Definitions) -> dg.Definitions:
    """The platform's definitions (test settings)."""
    return test_defs


class Ticks:
    """Evaluates the automation conditions of *definitions* tick after tick, like the sensor."""

    def __init__(self, instance: dg.DagsterInstance, definitions: dg.Definitions) -> None:
        self.instance, self.defs, self.cursor = instance, definitions, None

    def __call__(self) -> dict[str, set[str | None]]:
        """One tick: ``{asset: requested partition keys}`` (assets with no request left out)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        requested = {}
        for key in self.defs.resolve_all_asset_keys():
            keys = {str(k) if k is not None else None for k in result.get_requested_partitions(key)}
            if keys:
                requested[key.to_user_string()] = keys
        return requested


def _materialized(instance: dg.DagsterInstance, asset: str, keys: list[str | None]) -> None:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))


def _observed(instance: dg.DagsterInstance, sim: str, version: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetObservation("sim_inputs", partition=sim, tags={"dagster/data_version": version})
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SIMS_PARTITIONS, list(SIMS))
        yield instance


def _built(instance: dg.DagsterInstance, sims: tuple[str, ...] = SIMS) -> None:
    """Every data partition of *sims* built from inputs of version "a", and the revision."""
    for sim in sims:
        _observed(instance, sim, "a")
    _materialized(instance, "kappa_maps", list(sims))
    _materialized(instance, "tiles", [f"{s}|{lmax}" for s in sims for lmax in LMAX])
    _materialized(instance, "tile_shards", CONFIGS)
    _materialized(instance, "hf_dataset", [None])


def test_nothing_is_requested_when_nothing_changed(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    _built(instance)
    tick = Ticks(instance, defs)
    assert tick() == {}
    assert tick() == {}


def test_changed_input_rebuilds_that_sims_kappa_and_five_tiles(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """A new input version of sim 2: kappa_maps[2], then tiles[2|*], nothing else there."""
    _built(instance)
    tick = Ticks(instance, defs)
    assert tick() == {}
    _observed(instance, "2", "b")
    assert tick() == {"kappa_maps": {"2"}}
    assert tick() == {}  # requested once, not again while nothing new happened
    _materialized(instance, "kappa_maps", ["2"])
    assert tick() == {"tiles": {f"2|{lmax}" for lmax in LMAX}}
    assert tick() == {}


def test_nothing_is_requested_while_a_run_of_the_partition_is_in_progress(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """A queued run of kappa_maps[2]: its changed input waits until the run is over."""
    _built(instance)
    tick = Ticks(instance, defs)
    assert tick() == {}
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def("kappa_job"), tags={"dagster/partition": "2"}
    )
    _observed(instance, "2", "b")
    assert tick() == {}
    assert tick() == {}
    instance.report_run_canceled(run)
    assert tick() == {"kappa_maps": {"2"}}


def test_fan_in_assets_rebuild_once_after_the_wave_settles(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """Tiles of two sims update over several ticks; shards follow once, then the revision,
    then the compressor of the one configuration already trained."""
    _built(instance)
    _materialized(instance, "compressor_model", ["200|des_y3"])
    tick = Ticks(instance, defs)
    assert tick() == {}
    for sim in ("1", "2"):
        _observed(instance, sim, "b")
    assert tick() == {"kappa_maps": {"1", "2"}}
    _materialized(instance, "kappa_maps", ["1", "2"])
    assert tick() == {"tiles": {f"{s}|{lmax}" for s in ("1", "2") for lmax in LMAX}}
    _materialized(instance, "tiles", [f"1|{lmax}" for lmax in LMAX])
    assert tick() == {}  # tiles of sim 1 just updated: the wave has not settled
    _materialized(instance, "tiles", [f"2|{lmax}" for lmax in LMAX])
    assert tick() == {}
    assert tick() == {"tile_shards": set(CONFIGS)}  # once, every configuration
    assert tick() == {}
    _materialized(instance, "tile_shards", CONFIGS)
    assert tick() == {}
    assert tick() == {"hf_dataset": {None}, "compressor_model": {"200|des_y3"}}
    assert tick() == {}


def test_a_failed_sim_does_not_block_the_fan_in(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """Sim 3 never got kappa maps or tiles: shards still rebuild after sim 2 changes."""
    _built(instance, sims=("1", "2"))
    tick = Ticks(instance, defs)
    assert tick() == {}
    _materialized(instance, "tiles", [f"2|{lmax}" for lmax in LMAX])
    assert tick() == {}
    assert tick() == {"tile_shards": set(CONFIGS)}


def test_a_failed_tiles_run_does_not_block_the_fan_in(
    instance: dg.DagsterInstance, defs: dg.Definitions, test_resources: dict
) -> None:
    """tiles[3|200]'s run failed (recorded, not just missing): shards still follow sim 2."""
    _built(instance, sims=("1", "2"))
    failed = dg.materialize(
        [defs.get_assets_def("tiles")],
        partition_key="3|200",
        resources=test_resources,  # an empty data root: no kappa maps of sim 3
        instance=instance,
        raise_on_error=False,
    )
    assert not failed.success
    status = instance.get_status_by_partition(
        dg.AssetKey("tiles"), ["3|200"], defs.get_assets_def("tiles").partitions_def
    )
    assert status == {"3|200": dg.AssetPartitionStatus.FAILED}
    tick = Ticks(instance, defs)
    assert tick() == {}
    _materialized(instance, "tiles", [f"2|{lmax}" for lmax in LMAX])
    assert tick() == {}
    assert tick() == {"tile_shards": set(CONFIGS)}


def test_new_tile_code_version_rebuilds_every_tile(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    _built(instance)
    tick = Ticks(instance, defs)
    assert tick() == {}
    bumped = tiles.map_asset_specs(lambda spec: spec.replace_attributes(code_version="tiles-X"))
    assets = [bumped if a.key == tiles.key else a for a in defs.assets]  # type: ignore[union-attr]
    tick.defs = dg.Definitions(assets=assets, resources=defs.resources)  # the code was deployed
    assert tick() == {"tiles": {f"{s}|{lmax}" for s in SIMS for lmax in LMAX}}
    assert tick() == {}


def _write_npz_sim(kappa_dir: Path, sim: int, scale: float = 1.0) -> None:
    folder = kappa_dir / f"sim{sim:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    maps = scale * np.random.default_rng(sim).normal(0, 0.01, (4, 12 * 16**2))
    np.savez(folder / "kappa_maps.npz", **{f"kappa_bin{i}": m for i, m in enumerate(maps)})


def test_discovery_sensor_adds_and_requests_a_new_sim_once(tmp_path: Path) -> None:
    kappa_dir = tmp_path / "maps"
    for sim in (1, 2):
        _write_npz_sim(kappa_dir, sim)
    settings = settings_for(
        tmp_path / "data", source=SourceSettings(name="kappa_npz", kappa_dir=kappa_dir)
    )
    defs = build_defs(settings)
    resources = platform_resources(settings)
    sim_discovery_sensor = defs.get_sensor_def("sim_discovery_sensor")
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources, definitions=defs
            )
            result = sim_discovery_sensor(context)
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            return result

        first = tick(None)
        assert [r.partition_key for r in first.run_requests] == ["1", "2"]
        assert sorted(instance.get_dynamic_partitions(SIMS_PARTITIONS)) == ["1", "2"]
        assert {e.partition for e in first.asset_events} == {"1", "2"}
        again = tick(first.cursor)
        assert again.run_requests == []
        assert again.asset_events == []

        _write_npz_sim(kappa_dir, 3)
        third = tick(again.cursor)
        assert [r.partition_key for r in third.run_requests] == ["3"]
        assert [r.run_key for r in third.run_requests] == ["sim-3"]
        assert [e.partition for e in third.asset_events] == ["3"]
        assert sorted(instance.get_dynamic_partitions(SIMS_PARTITIONS)) == ["1", "2", "3"]
        quiet = tick(third.cursor)
        assert quiet.run_requests == []
        assert quiet.asset_events == []

        _write_npz_sim(kappa_dir, 2, scale=2.0)  # new content of sim 2's input file
        changed = tick(quiet.cursor)
        assert changed.run_requests == []  # the automation rebuilds it, from the observation
        assert [e.partition for e in changed.asset_events] == ["2"]
        event = changed.asset_events[0]
        assert event.tags["dagster/data_version"] != json.loads(quiet.cursor)["versions"]["1"]
        assert tick(changed.cursor).asset_events == []


def test_schedules_request_only_missing_partitions(
    instance: dg.DagsterInstance, defs: dg.Definitions
) -> None:
    """Sims 1 and 2 have kappa maps; tiles of sim 1 and tiles[2|200]; two shard configs."""
    _materialized(instance, "kappa_maps", ["1", "2"])
    _materialized(instance, "tiles", [f"1|{lmax}" for lmax in LMAX] + ["2|200"])
    _materialized(instance, "tile_shards", ["200|des_y3", "600|noiseless"])
    assert missing_kappa(instance) == ["3"]
    assert set(missing_tiles(instance)) == {f"2|{lmax}" for lmax in LMAX[1:]}
    assert set(missing_shards(instance)) == set(CONFIGS) - {"200|des_y3", "600|noiseless"}
    assert missing_hf_dataset(instance) == [None]
    by_name = {schedule.name: schedule for schedule in defs.schedules}  # type: ignore[union-attr]
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=NIGHT, repository_def=defs.get_repository_def()
    )
    requests = by_name["fill_missing_tiles"].evaluate_tick(context).run_requests
    # one run for the four missing lmax of sim 2 (a partition range: 2|400 ... 2|1000)
    (request,) = requests
    assert request.partition_key is None
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2|400", "2|1000")
    assert request.run_key == "2026-11-22T02:00/2|400...2|1000"
    (kappa,) = by_name["fill_missing_kappa_maps"].evaluate_tick(context).run_requests
    assert (kappa.tags[RANGE_START], kappa.tags[RANGE_END]) == ("3", "3")
    shards = by_name["fill_missing_tile_shards"].evaluate_tick(context).run_requests
    assert {r.partition_key for r in shards} == set(missing_shards(instance))
    _materialized(instance, "kappa_maps", ["3"])
    _materialized(instance, "hf_dataset", [None])
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=NIGHT, repository_def=defs.get_repository_def()
    )
    skipped = by_name["fill_missing_kappa_maps"].evaluate_tick(context)
    assert skipped.run_requests == []
    assert "nothing is missing" in skipped.skip_message
    assert missing_hf_dataset(instance) == []


def test_automation_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    """Sensors and schedules run by default; LENSING_AUTOMATION=off starts them stopped."""
    defs = build_defs(PlatformSettings.from_env({"LENSING_DATA_ROOT": str(tmp_path)}))
    sensors = {s.name: s for s in defs.sensors}  # type: ignore[union-attr]
    assert sensors["lensing_automation"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["sim_discovery_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    schedules = list(defs.schedules)  # type: ignore[arg-type]
    assert len(schedules) == 4
    for schedule in schedules:
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedule.cron_schedule == "0 2 * * *"
    off = build_defs(
        PlatformSettings.from_env(
            {
                "LENSING_DATA_ROOT": str(tmp_path),
                "LENSING_AUTOMATION": "off",
                "LENSING_BACKFILL_CRON": "30 3 * * 6",
            }
        )
    )
    statuses = {s.default_status.value for s in [*off.sensors, *off.schedules]}  # type: ignore[misc]
    assert statuses == {"STOPPED"}
    assert {s.cron_schedule for s in off.schedules} == {"30 3 * * 6"}  # type: ignore[union-attr]
