"""Faults during batched runs: a Dask worker killed mid-batch, the daemon restarted
mid-backfill, a scheduler that does not answer. Nothing is lost, nothing half-written, and
the files are the bytes an uninterrupted run writes."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.execution.backfill import BulkActionStatus

from lensing_assets.defs.automation import RANGE_END, RANGE_START
from lensing_assets.defs.kappa import kappa_maps
from lensing_core.cluster import ClusterSettings
from lensing_core.products import make_kappa
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot
from tests.fixtures.daemon import (
    backfill_runs,
    materialization_counts,
    start_daemon,
    wait_for_backfill,
)
from tests.fixtures.dagster import TEST_NSIDE, ephemeral_instance
from tests.fixtures.servers import free_port, stop_process_group, tail
from tests.fixtures.shell import shell, user_environment


def _reference_bytes(tmp_path: Path, sims: list[int], nside: int) -> dict[int, bytes]:
    """The kappa files of *sims* made one by one in this process: the uninterrupted bytes."""
    root = DataRoot(tmp_path / "reference")
    source = SyntheticSource(synthetic_catalog(), nside=nside)
    return {s: make_kappa(root, source, s).path.read_bytes() for s in sims}


def _no_partial_files(data_root: Path) -> list[Path]:
    """Files under the data root outside its scratch folder whose name says partial."""
    return [p for p in data_root.rglob("*") if ".tmp" not in p.parts and "partial" in p.name]


def _worker_processes() -> list[psutil.Process]:
    """The Dask worker processes this test process started (spawned children)."""
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline()) and "resource_tracker" not in child.cmdline()
    ]


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_no_partition(
    data_root: Path, test_resources: dict, tmp_path: Path
) -> None:
    """SIGKILL a busy worker of two while six sims are made: all six land, once, intact."""
    sims = [101, 102, 103, 104, 105, 106]
    instance = ephemeral_instance(sims)
    outcome: dict[str, dg.ExecuteInProcessResult] = {}

    def run() -> None:
        outcome["result"] = dg.materialize(
            [kappa_maps],
            instance=instance,
            resources=test_resources,
            tags={RANGE_START: "101", RANGE_END: "106"},
            raise_on_error=False,
        )

    thread = threading.Thread(target=run)
    thread.start()
    killed: list[int] = []
    deadline = time.monotonic() + 120
    kappa_dir = data_root / "kappa"
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        # once a sim is done the workers are past their start and on the next sims
        done = list(kappa_dir.glob("*.npz")) if kappa_dir.exists() else []
        busy = [p for p in _worker_processes() if p.cpu_percent(interval=0.1) > 20]
        if done and busy:
            os.kill(busy[0].pid, signal.SIGKILL)
            killed.append(busy[0].pid)
    thread.join(timeout=300)
    assert killed, "no busy worker was seen to kill"
    result = outcome["result"]
    assert result.success, [e.message for e in result.all_events if "FAIL" in e.event_type_value]
    assert materialization_counts(instance, "kappa_maps") == {str(s): 1 for s in sims}
    reference = _reference_bytes(tmp_path, sims, TEST_NSIDE)
    root = DataRoot(data_root)
    for sim in sims:
        assert root.kappa_path(sim).read_bytes() == reference[sim], sim
    assert _no_partial_files(data_root) == []


def test_an_unreachable_scheduler_fails_the_run_naming_its_address(
    test_resources: dict,
) -> None:
    """LENSING_DASK_CLUSTER=address at a port nothing listens on: the run fails, says where."""
    address = f"tcp://127.0.0.1:{free_port()}"
    cluster = ClusterSettings(kind="address", address=address, connect_timeout_s=2.0)
    result = dg.materialize(
        [kappa_maps],
        instance=ephemeral_instance([101, 102]),
        resources={**test_resources, "cluster": cluster},
        tags={RANGE_START: "101", RANGE_END: "102"},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error  # type: ignore[union-attr]
    assert address in error.message
    assert "LENSING_DASK_ADDRESS" in error.message
    assert result.asset_materializations_for_node("kappa_maps") == []


@pytest.mark.slow
def test_the_daemon_restarted_mid_backfill_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the daemon while the first of three runs works, start it again: all six land once."""
    sims = [101, 102, 103, 104, 105, 106]
    env = user_environment(
        tmp_path,
        LENSING_SUITE="101-106",
        LENSING_NSIDE=str(TEST_NSIDE),
        LENSING_AUTOMATION="off",
        LENSING_KAPPA_PER_RUN="2",
        LENSING_DASK_WORKERS="2",
    )
    data_root = Path(env["LENSING_DATA_ROOT"])
    assert shell("python -m lensing_assets.register", env).returncode == 0
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # dagster.yaml's storage reads it
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = tmp_path / "daemon.log"
    first = start_daemon(env, log)
    try:
        submitted = shell("python -m lensing_assets.backfill --select kappa_maps", env)
        assert submitted.returncode == 0, submitted.stderr
        backfill_id = submitted.stdout.split()[1].rstrip(":")
        deadline = time.monotonic() + 180
        while not backfill_runs(instance, backfill_id):
            assert time.monotonic() < deadline, tail(log)
            time.sleep(0.5)
        os.kill(first.pid, signal.SIGKILL)  # the daemon only: its runs go on in their processes
        first.wait(timeout=30)
        time.sleep(2.0)
        second = start_daemon(env, log)
        try:
            status = wait_for_backfill(instance, backfill_id, log)
        finally:
            stop_process_group(second, timeout_s=60.0)
    finally:
        stop_process_group(first, timeout_s=10.0)
    assert status == BulkActionStatus.COMPLETED_SUCCESS, tail(log)
    runs = backfill_runs(instance, backfill_id)
    assert len(runs) == 3, [r.tags for r in runs]
    assert materialization_counts(instance, "kappa_maps") == {str(s): 1 for s in sims}
    reference = _reference_bytes(tmp_path, sims, TEST_NSIDE)
    for sim in sims:
        assert DataRoot(data_root).kappa_path(sim).read_bytes() == reference[sim], sim
    assert _no_partial_files(data_root) == []


def test_cluster_settings_reach_the_assets(tmp_path: Path) -> None:
    """LENSING_DASK_* settings become the ``cluster`` resource the batched assets use."""
    from lensing_assets.definitions import build_defs
    from lensing_core.config import PlatformSettings

    settings = PlatformSettings.from_env(
        {
            "LENSING_DATA_ROOT": str(tmp_path),
            "LENSING_DASK_CLUSTER": "address",
            "LENSING_DASK_ADDRESS": "tcp://10.1.2.3:8786",
        }
    )
    defs = build_defs(settings)
    cluster = defs.resources["cluster"]  # type: ignore[index]
    assert cluster == dataclasses.replace(
        ClusterSettings(), kind="address", address="tcp://10.1.2.3:8786"
    )
