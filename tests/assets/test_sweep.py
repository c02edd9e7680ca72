"""``python -m lensing_assets.sweep`` on a fresh instance, typed as the README's user types it.

The instance's ``dagster.yaml`` is the repository's (``. ./env.sh`` links it) and no daemon
runs, so submitted runs stay QUEUED and the test reads them from the instance. The sweep
only asks whether a configuration's shard manifest is a file, so the data root holds two
manifests and nothing else. Where the queue would launch the runs, the daemon's own choice
of the next runs (``QueuedRunCoordinatorDaemon._get_runs_to_dequeue``) is asked, run after
run, as the daemon does every few seconds.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from lensing_assets import sweep
from lensing_assets.defs.models import GPU_RUN_TAGS
from lensing_assets.defs.partitions import config_of
from lensing_core.inference.config import NPEConfig, compressor_preset
from lensing_core.storage import DataRoot
from tests.fixtures.shell import REPO, shell, user_environment

WITH_SHARDS = ("200|des_y3", "600|noiseless")  # in partition order
SWEEP = "python -m lensing_assets.sweep"


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh user's environment; shard manifests of WITH_SHARDS; this test reads its instance.

    The code location is started with the ``full`` preset: the runs must carry the sweep's.
    """
    env = user_environment(
        tmp_path, LENSING_SUITE="101-102", LENSING_AUTOMATION="off", LENSING_TRAINING_PRESET="full"
    )
    for key in WITH_SHARDS:
        write_manifest(Path(env["LENSING_DATA_ROOT"]), key)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    return env


def write_manifest(data_root: Path, key: str) -> Path:
    manifest = DataRoot(data_root).shards(*config_of(key)).manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("{}")
    return manifest


def runs_in(env: dict[str, str]) -> list[dg.DagsterRun]:
    """The runs of the user's instance, oldest first (the order the queue takes them in)."""
    if not (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists():
        return []
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(ascending=True))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


def config_runs(runs: list[dg.DagsterRun]) -> list[str]:
    return [run.tags["dagster/partition"] for run in runs if run.job_name == sweep.CONFIG_JOB]


def queue_order(instance: dg.DagsterInstance) -> Iterator[dg.DagsterRun]:
    """The runs the daemon launches, in turn: each one ends before the daemon looks again."""
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=5)
    config = instance.get_concurrency_config()
    while batch := daemon._get_runs_to_dequeue(instance, config, None):
        (run,) = batch
        starting = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name
        )
        instance.report_dagster_event(starting, run_id=run.run_id)
        # While it runs, no other GPU-tagged run may start.
        assert not daemon._get_runs_to_dequeue(instance, config, None)
        yield run
        instance.report_run_failed(run)  # a failed run frees the queue as a finished one does


def test_sweep_queues_one_run_per_configuration_then_the_study(user: dict[str, str]) -> None:
    import torch

    default = "full" if torch.cuda.is_available() else "cpu_demo"
    dry = ok(shell(f"{SWEEP} --dry-run", user))
    would = [line.split()[2:] for line in dry.splitlines() if line.startswith("would submit")]
    assert would == [
        *(["study_config_job", key, "preset", default] for key in WITH_SHARDS),
        ["study_job", "-"],
    ]
    assert runs_in(user) == []

    out = ok(shell(f"{SWEEP} --preset cpu_demo", user))
    runs = runs_in(user)
    assert [run.job_name for run in runs] == [sweep.CONFIG_JOB] * 2 + [sweep.STUDY_JOB]
    assert config_runs(runs) == list(WITH_SHARDS)
    compressor = dataclasses.asdict(compressor_preset("cpu_demo"))
    for run in runs:
        assert run.status == dg.DagsterRunStatus.QUEUED
        assert GPU_RUN_TAGS.items() <= run.tags.items()
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "lensing"  # workspace.yaml's, as dagster dev
        assert f"submitted {run.run_id}  {run.job_name}" in out
    for run in runs[:2]:
        ops: Any = run.run_config["ops"]
        assert ops["compressor_model"]["config"] == compressor
        assert ops["npe_model"]["config"] == dataclasses.asdict(NPEConfig())
        assert run.tags["dagster/partition/lmax"] == run.tags["dagster/partition"].split("|")[0]
    assert "dagster/partition" not in runs[2].tags
    assert "dagster dev" in out

    again = ok(shell(f"{SWEEP} --preset cpu_demo", user))
    assert "nothing to submit" in again
    for run in runs:
        assert f"run {run.run_id} is QUEUED" in again
    assert [run.run_id for run in runs_in(user)] == [run.run_id for run in runs]

    # Shards of a third configuration appear: only its run and a study run after it are added.
    write_manifest(Path(user["LENSING_DATA_ROOT"]), "1000|lsst_y10")
    ok(shell(f"{SWEEP} --preset cpu_demo", user))
    runs = runs_in(user)
    assert config_runs(runs) == [*WITH_SHARDS, "1000|lsst_y10"]
    assert [run.job_name for run in runs[3:]] == [sweep.CONFIG_JOB, sweep.STUDY_JOB]

    with dg.DagsterInstance.get() as instance:
        launched = [run.run_id for run in queue_order(instance)]
    assert launched == [run.run_id for run in runs]  # the studies after the runs before them


@pytest.mark.parametrize(
    ("configs", "messages"),
    [
        ("'999|des_y3'", ["'999|des_y3' is not a configuration; known: 200|noiseless"]),
        (
            "'200|des_y3' '200|lsst_y10'",
            [
                "configuration 200|lsst_y10 has no shards: {root}/hf_dataset/data/"
                "lmax_200_lsst_y10/shards.json is not a file",
                "dagster asset materialize --select tile_shards --partition '200|lsst_y10'",
            ],
        ),
    ],
)
def test_a_configuration_without_shards_is_refused(
    user: dict[str, str], configs: str, messages: list[str]
) -> None:
    result = shell(f"{SWEEP} --preset cpu_demo --configs {configs}", user)
    assert result.returncode == 1
    for message in messages:
        assert message.format(root=user["LENSING_DATA_ROOT"]) in result.stderr
    assert runs_in(user) == []


def test_no_shards_at_all_says_how_to_build_them(tmp_path: Path) -> None:
    result = shell(f"{SWEEP} --preset cpu_demo", user_environment(tmp_path))
    assert result.returncode == 1
    assert "no configuration has shards" in result.stderr
    assert "make demo" in result.stderr
    assert "dagster asset materialize --select tile_shards --partition '200|des_y3'" in (
        result.stderr
    )


def test_an_invalid_run_config_submits_nothing(
    user: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    (Path(user["DAGSTER_HOME"])).mkdir()
    (Path(user["DAGSTER_HOME"]) / "dagster.yaml").symlink_to(REPO / "dagster.yaml")
    monkeypatch.chdir(REPO)

    def misspelt(training: object) -> dict[str, Any]:
        return {"ops": {"compressor_model": {"config": {"max_epoch": 3}}}}

    monkeypatch.setattr(sweep, "training_run_config", misspelt)
    assert sweep.main(["--preset", "cpu_demo"]) == 1
    err = capsys.readouterr().err
    assert "invalid run config, nothing submitted" in err
    assert "max_epoch" in err
    assert runs_in(user) == []


DIRECT = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run_coordinator": DIRECT}, "not the QueuedRunCoordinator"),
        ({}, "does not limit runs tagged lensing/resource=gpu to one at a time"),  # 1.13's default
    ],
)
def test_a_queue_that_would_not_hold_the_study_back_is_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with (
        dg.instance_for_test(overrides=overrides) as instance,
        pytest.raises(sweep.SweepError, match=message),
    ):
        sweep.check_queue(instance)
