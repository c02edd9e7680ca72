"""Backfills run many partitions per run, and each partition's truth is still its own.

Through the daemon, as a user would: sims registered with ``python -m lensing_assets.register``,
the backfill submitted with ``python -m lensing_assets.backfill`` (an asset backfill, as the UI
makes), run by ``dagster-daemon``. Ranged runs directly (``dg.materialize`` with the range tags
a backfill's runs carry) check the per-partition records without a daemon.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from lensing_assets.defs.automation import RANGE_END, RANGE_START, key_ranges, tile_ranges
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.partitions import register_sims
from lensing_assets.defs.tiles import tiles
from tests.fixtures.daemon import (
    backfill_runs,
    daemon,
    materialization_counts,
    run_partitions,
    wait_for_backfill,
)
from tests.fixtures.dagster import ephemeral_instance
from tests.fixtures.servers import tail
from tests.fixtures.shell import shell, user_environment
from tests.fixtures.slurm import SlurmTestCluster

SIMS = ["101", "102", "103", "104", "105", "106"]


def _statuses(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, keys: list[str]) -> dict:
    partitions_def = asset.partitions_def
    assert partitions_def is not None
    status = instance.get_status_by_partition(asset.key, keys, partitions_def) or {}
    return {key: status.get(key) for key in keys}


def _block(data_root: Path, sim: str) -> Path:
    """Make the kappa file of *sim* unwritable: a folder where the file goes."""
    blocker = data_root / "kappa" / f"sim{int(sim):05d}.npz"
    blocker.mkdir(parents=True)
    (blocker / "keep").touch()
    return blocker


def test_a_ranged_run_records_each_partition_and_fails_only_the_bad_one(
    data_root: Path, test_resources: dict
) -> None:
    """kappa_maps over sims 101-104 in one run, 103 unwritable: 3 materialized, 103 failed."""
    instance = ephemeral_instance()
    register_sims(instance, [101, 102, 103, 104])
    _block(data_root, "103")
    result = dg.materialize(
        [kappa_maps],
        instance=instance,
        resources=test_resources,
        tags={RANGE_START: "101", RANGE_END: "104"},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "1 of 4 partitions failed (3 materialized)" in message
    assert "- 103:" in message
    assert "sim00103.npz" in message
    keys = ["101", "102", "103", "104"]
    status = _statuses(instance, kappa_maps, keys)
    assert status == {
        "101": dg.AssetPartitionStatus.MATERIALIZED,
        "102": dg.AssetPartitionStatus.MATERIALIZED,
        "103": dg.AssetPartitionStatus.FAILED,
        "104": dg.AssetPartitionStatus.MATERIALIZED,
    }
    # each materialization carries its own sim's record, and its checks are on its partition
    for record in instance.fetch_materializations(kappa_maps.key, limit=10).records:
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["sim_id"].value == int(record.partition_key)  # type: ignore[arg-type]
    check = dg.AssetCheckKey(kappa_maps.key, "maps_finite")
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
    executed = {str(r.partition): r.status.value for r in history if r.status.value != "PLANNED"}
    assert executed == dict.fromkeys(["101", "102", "104"], "SUCCEEDED"), executed

    shutil.rmtree(data_root / "kappa" / "sim00103.npz")
    retry = dg.materialize(
        [kappa_maps], instance=instance, resources=test_resources, partition_key="103"
    )
    assert retry.success
    assert set(_statuses(instance, kappa_maps, keys).values()) == {
        dg.AssetPartitionStatus.MATERIALIZED
    }


def test_ranged_tiles_run_makes_each_sims_lmax_together(
    data_root: Path, test_resources: dict
) -> None:
    """tiles over 101|200 ... 103|200 in one run: 103 has no kappa maps and fails alone."""
    instance = ephemeral_instance()
    register_sims(instance, [101, 102, 103])
    made = dg.materialize(
        [kappa_maps],
        instance=instance,
        resources=test_resources,
        tags={RANGE_START: "101", RANGE_END: "102"},
    )
    assert made.success
    result = dg.materialize(
        [tiles],
        instance=instance,
        resources=test_resources,
        tags={RANGE_START: "101|200", RANGE_END: "103|200"},
        raise_on_error=False,
    )
    assert not result.success
    keys = ["101|200", "102|200", "103|200"]
    status = _statuses(instance, tiles, keys)
    assert status["101|200"] == status["102|200"] == dg.AssetPartitionStatus.MATERIALIZED
    assert status["103|200"] == dg.AssetPartitionStatus.FAILED
    for record in instance.fetch_materializations(tiles.key, limit=10).records:
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        assert f"{metadata['sim_id'].value}|{metadata['lmax'].value}" == record.partition_key


def test_schedule_ranges_group_whole_sims() -> None:
    """The fill-missing schedules ask for runs of consecutive sims, every lmax of a sim in one."""
    sims = [str(s) for s in range(1, 9)]
    assert key_ranges(["1", "2", "3", "5", "6", "8"], sims, 2) == [
        ("1", "2"),
        ("3", "3"),
        ("5", "6"),
        ("8", "8"),
    ]
    every = [f"{s}|{lmax}" for s in sims[:4] for lmax in (200, 400, 600, 800, 1000)]
    assert tile_ranges(every, sims, 10) == [("1|200", "2|1000"), ("3|200", "4|1000")]
    some = ["5|200", "5|400", "6|200", "6|400", "7|1000", "8|200", "8|600"]
    assert tile_ranges(some, sims, 50) == [
        ("5|200", "6|400"),
        ("7|1000", "7|1000"),
        ("8|200", "8|200"),
        ("8|600", "8|600"),
    ]


@pytest.mark.slow
def test_backfill_through_the_daemon_batches_and_retries_only_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six sims: one run of kappa maps, tiles in two; a failed sim alone is retried after."""
    env = user_environment(
        tmp_path,
        LENSING_SUITE="101-106",
        LENSING_NSIDE="128",
        LENSING_AUTOMATION="off",
        LENSING_DASK_WORKERS="2",
    )
    data_root = Path(env["LENSING_DATA_ROOT"])
    registered = shell("python -m lensing_assets.register", env)
    assert registered.returncode == 0, registered.stderr
    blocker = _block(data_root, "103")
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # dagster.yaml's storage reads it
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = tmp_path / "daemon.log"
    with daemon(env, log):
        submitted = shell("python -m lensing_assets.backfill --lmax 200", env)
        assert submitted.returncode == 0, submitted.stderr
        assert "6 kappa_maps, 6 tiles partitions" in submitted.stdout, submitted.stdout
        first = submitted.stdout.split()[1].rstrip(":")
        assert wait_for_backfill(instance, first, log) == BulkActionStatus.COMPLETED_FAILED

        runs = backfill_runs(instance, first)
        ranges = sorted(run_partitions(run) or ("single", run.run_id) for run in runs)
        # the tiles of sim 103 are not asked for (its maps failed): two ranges around it
        assert ranges == [("101", "106"), ("101|200", "102|200"), ("104|200", "106|200")]
        kappa_keys = SIMS
        tile_keys = [f"{s}|200" for s in SIMS]
        kappa_status = _statuses(instance, kappa_maps, kappa_keys)
        assert kappa_status.pop("103") == dg.AssetPartitionStatus.FAILED
        assert set(kappa_status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
        tile_status = _statuses(instance, tiles, tile_keys)
        assert tile_status.pop("103|200") is None  # never tried: its kappa maps failed
        assert set(tile_status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
        # one run process each, its one step in it (no step subprocess); the Dask cluster of
        # the batch and its dashboard are in the run's log
        for run in runs:
            messages = [e.message for e in instance.all_logs(run.run_id)]
            assert any("Executing steps in process" in m for m in messages), messages
            assert any(
                "on the Dask local cluster, 2 workers, dashboard http://" in m for m in messages
            )

        shutil.rmtree(blocker)
        retried = shell("python -m lensing_assets.backfill --lmax 200 --missing", env)
        assert retried.returncode == 0, retried.stderr
        assert "1 kappa_maps, 1 tiles partitions" in retried.stdout, retried.stdout
        second = retried.stdout.split()[1].rstrip(":")
        assert wait_for_backfill(instance, second, log) == BulkActionStatus.COMPLETED_SUCCESS
        partitions = sorted(
            run_partitions(r) or (r.tags["dagster/partition"],) * 2
            for r in backfill_runs(instance, second)
        )
        assert partitions == [("103", "103"), ("103|200", "103|200")], partitions

    assert materialization_counts(instance, "kappa_maps") == dict.fromkeys(kappa_keys, 1)
    assert materialization_counts(instance, "tiles") == dict.fromkeys(tile_keys, 1)
    scratch = data_root / ".tmp"
    assert not scratch.exists() or not any(scratch.iterdir())


@pytest.mark.slow
def test_backfill_on_a_slurm_cluster(
    slurm_cluster: SlurmTestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LENSING_DASK_CLUSTER=slurm: a backfill's kappa maps and tiles run in SLURM jobs."""
    env = user_environment(
        tmp_path,
        LENSING_SUITE="101-103",
        LENSING_NSIDE="128",
        LENSING_AUTOMATION="off",
        LENSING_DASK_CLUSTER="slurm",
        LENSING_SLURM_QUEUE=slurm_cluster.partition,
        LENSING_SLURM_CORES="1",
        LENSING_SLURM_MEMORY="1GB",
        LENSING_SLURM_WALLTIME="00:10:00",
        LENSING_SLURM_JOBS="2",
        LENSING_SLURM_WAIT="120",
        LENSING_SLURM_LOG_DIR=str(tmp_path / "slurm_logs"),
        LENSING_SLURM_LOCAL_DIR=str(tmp_path / "dask"),
        SLURM_CONF=str(slurm_cluster.conf),
    )
    assert shell("python -m lensing_assets.register", env).returncode == 0
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = tmp_path / "daemon.log"
    with daemon(env, log):
        submitted = shell("python -m lensing_assets.backfill --lmax 200", env)
        assert submitted.returncode == 0, submitted.stderr
        backfill_id = submitted.stdout.split()[1].rstrip(":")
        status = wait_for_backfill(instance, backfill_id, log)
    assert status == BulkActionStatus.COMPLETED_SUCCESS, tail(log)
    assert materialization_counts(instance, "kappa_maps") == dict.fromkeys(["101", "102", "103"], 1)
    assert materialization_counts(instance, "tiles") == {f"{s}|200": 1 for s in (101, 102, 103)}
    for run in backfill_runs(instance, backfill_id):
        messages = [e.message for e in instance.all_logs(run.run_id)]
        assert any("on the Dask SLURM cluster" in m for m in messages), messages
    job_logs = sorted((tmp_path / "slurm_logs").glob("lensing-dask-*.err"))
    assert len(job_logs) >= 2, job_logs  # the workers ran as SLURM jobs
    assert slurm_cluster.queue() == []  # and left the queue with their batch
