"""The run queue and the GPU pool of the repository's dagster.yaml, watched while they work.

``dagster dev`` (webserver, daemon, code servers) runs the repository's code location
(``-m lensing_assets``) and stand-ins for GPU runs (``-m tests.fixtures.queue_jobs``) on an
instance of its own under ``tmp_path``, whose ``dagster.yaml`` is a link to the repository's,
as env.sh makes it. Runs are submitted through the GraphQL API, as the UI's Launchpad does.
The real training runs fail within seconds (there are no shards), which is enough: a run
holds its slot until it ends. A stand-in holds the GPU (tag and pool) until the test releases
it, so the queue has to keep the other GPU runs waiting for as long as the test watches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.fixtures.queue_jobs import HOLD_OP
from tests.fixtures.run_queue import (
    REPO,
    STAND_INS,
    DevServer,
    Submission,
    dagster_dev_server,
    has_event,
    launch,
    max_overlap,
    poll,
    records,
    run_times,
    timeline,
    wait_for_locations,
)

MAX_CONCURRENT_RUNS = 2  # concurrency.runs.max_concurrent_runs of dagster.yaml
MISSING_SHARDS = "Make it with: dagster asset materialize"  # how the training runs fail

STEP_START_TIMEOUT_S = 120.0
SETTLE_S = 12.0  # two ticks of the daemon's run queue (every 5 s)
RELEASE_TIMEOUT_S = 120.0
RUNS_TIMEOUT_S = 300.0

HOLD = Submission("hold_gpu_job", location=STAND_INS)
TAG_ONLY = Submission("gpu_tag_only_job", location=STAND_INS)  # only the tag limit holds it
TAGGED_TRAINING = [Submission("compressor_job", "200|des_y3"), Submission("npe_job", "200|des_y3")]
# A model asset materialized on its own (the UI's "Materialize"): no run tag, only the pool.
UNTAGGED_TRAINING = Submission("__ASSET_JOB", "200|noiseless", assets=("compressor_model",))
KAPPA = [Submission("kappa_job", "101"), Submission("kappa_job", "102")]
GPU_TAGGED = (HOLD, TAG_ONLY, *TAGGED_TRAINING)
HELD = (TAG_ONLY, *TAGGED_TRAINING, UNTAGGED_TRAINING)  # must wait while the stand-in holds
# Submitted while the stand-in holds the GPU, in this order. The tag-only run comes first: in
# one pass of the queue, a run that the pool holds back still counts against the tag limit,
# which would otherwise hide a broken tag limit from the runs behind it.
WHILE_HELD = [*HELD, *KAPPA]


@pytest.fixture
def dagster_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    """``dagster dev`` with both code locations on a fresh instance, stopped at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "LENSING_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        OMP_WAIT_POLICY="PASSIVE",
        LENSING_DATA_ROOT=str(tmp_path / "data"),
        LENSING_SUITE="101-102",
        LENSING_NSIDE="64",  # kappa maps in a second
        LENSING_NTHREADS="1",
        LENSING_ACCELERATOR="cpu",
        LENSING_AUTOMATION="off",  # no sensor or schedule launches runs of its own
    )
    modules = ["lensing_assets", STAND_INS]
    with dagster_dev_server(tmp_path, REPO / "dagster.yaml", env, modules) as server:
        monkeypatch.setenv("DAGSTER_HOME", str(server.home))  # the instance this test reads
        yield server


@pytest.mark.slow
def test_daemon_queues_runs_and_keeps_the_limits(dagster_dev: DevServer) -> None:
    """With the daemon running, runs beyond the limits wait in the queue: never more than two
    runs hold a slot at once, never two GPU-tagged runs (real training runs and a run that only
    the tag limit holds wait while the stand-in holds the GPU), never two steps of the "gpu"
    pool (an untagged model run waits too), and every run ends: kappa maps and the stand-ins
    succeed, training without shards fails for that reason."""
    server = dagster_dev
    repos = wait_for_locations(server)
    instance = dg.DagsterInstance.from_config(str(server.home))

    # The stand-in takes the GPU; once its step runs, the others are submitted.
    hold_config = {"ops": {HOLD_OP: {"config": {"release_file": str(server.release)}}}}
    hold_id = launch(server, repos, HOLD, hold_config)
    poll(
        server,
        "the stand-in's step started",
        STEP_START_TIMEOUT_S,
        lambda: has_event(instance, hold_id, dg.DagsterEventType.STEP_START),
    )
    run_ids = {hold_id: HOLD}
    run_ids |= {launch(server, repos, s): s for s in WHILE_HELD}
    kappa_ids = [i for i, s in run_ids.items() if s in KAPPA]
    held_ids = [i for i, s in run_ids.items() if s in HELD]

    def settled() -> bool:
        """The kappa runs ended SETTLE_S ago, and every held run is still queued, has ended,
        or has run SETTLE_S: the queue had its chances to launch what it must hold."""
        now = time.time()
        by_id = {r.dagster_run.run_id: r for r in records(instance, list(run_ids))}

        def settle_ago(timestamp: float | None) -> bool:
            return timestamp is not None and now - timestamp > SETTLE_S

        if not all(settle_ago(by_id[i].end_time) for i in kappa_ids):
            return False
        return all(
            by_id[i].dagster_run.status == dg.DagsterRunStatus.QUEUED
            or by_id[i].dagster_run.is_finished
            or settle_ago(by_id[i].start_time)
            for i in held_ids
        )

    poll(server, "the kappa runs ended while the GPU was held", RELEASE_TIMEOUT_S, settled)
    server.release.touch()

    def all_finished() -> bool:
        finished = records(instance, list(run_ids))
        return len(finished) == len(run_ids) and all(r.dagster_run.is_finished for r in finished)

    poll(server, "every run finished", RUNS_TIMEOUT_S, all_finished)
    runs = [run_times(instance, run_id, s) for run_id, s in run_ids.items()]
    instance.dispose()
    times = timeline(runs)
    print(times)
    (hold,) = (r for r in runs if r.submission == HOLD)
    (untagged,) = (r for r in runs if r.submission == UNTAGGED_TRAINING)

    for run in runs:
        assert run.enqueued <= run.launched <= run.started <= run.ended, times
        if run.submission in (*TAGGED_TRAINING, UNTAGGED_TRAINING):
            assert run.status == dg.DagsterRunStatus.FAILURE, times
            assert run.failures, times
            assert all(MISSING_SHARDS in message for message in run.failures), run.failures
        else:
            assert run.status == dg.DagsterRunStatus.SUCCESS, (run.failures, times)
    # the real training jobs carry the GPU tag, a model asset materialized alone does not
    assert [r.gpu_tagged for r in runs] == [s in GPU_TAGGED for s in run_ids.values()]

    # The run queue: more runs than the limit waited at once, and at most two held a slot.
    most_waiting = max_overlap([(r.enqueued, r.launched) for r in runs])
    assert most_waiting > MAX_CONCURRENT_RUNS, f"at most {most_waiting} queued\n{times}"
    most_running = max_overlap([(r.launched, r.ended) for r in runs])
    assert most_running == MAX_CONCURRENT_RUNS, f"{most_running} runs at once\n{times}"

    # The GPU tag: the other GPU-tagged runs were queued while the stand-in held the GPU, and
    # no two GPU-tagged runs held a slot at the same time.
    gpu_runs = [r for r in runs if r.gpu_tagged]
    assert all(r.enqueued < hold.ended for r in gpu_runs), times
    most_gpu = max_overlap([(r.launched, r.ended) for r in gpu_runs])
    assert most_gpu == 1, f"{most_gpu} GPU-tagged runs at once\n{times}"

    # The pool: the untagged model run was queued while the stand-in held the slot, and no
    # two steps of the pool ran at the same time.
    ((_, hold_step_end),) = hold.pool_steps
    assert untagged.enqueued < hold_step_end, times
    steps = [step for r in runs for step in r.pool_steps]
    assert len(steps) == 1 + len(TAGGED_TRAINING) + 1, times
    most_steps = max_overlap(steps)
    assert most_steps == 1, f'{most_steps} steps of the "gpu" pool at once\n{times}'
