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
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lensing_assets.defs.models import GPU_RUN_TAGS
from tests.fixtures.queue_jobs import HOLD_OP
from tests.fixtures.servers import free_port, graphql, stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]  # the tree under test: its dagster.yaml and code

MAX_CONCURRENT_RUNS = 2  # concurrency.runs.max_concurrent_runs of dagster.yaml
POOL_STEPS = {"compressor_model", "npe_model", HOLD_OP}  # steps of the "gpu" pool
MISSING_SHARDS = "Make it with: dagster asset materialize"  # how the training runs fail

# One process per run, not one more per step: a run takes seconds instead of half a minute.
IN_PROCESS: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}

SERVER_START_TIMEOUT_S = 120.0
STEP_START_TIMEOUT_S = 120.0
SETTLE_S = 12.0  # two ticks of the daemon's run queue (every 5 s)
RELEASE_TIMEOUT_S = 120.0
RUNS_TIMEOUT_S = 300.0

LAUNCH_MUTATION = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

LOCATIONS_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Submission:
    """One run to launch: a job of a code location, or the asset job with a selection."""

    job: str
    partition: str | None = None
    assets: tuple[str, ...] = ()
    location: str = "lensing_assets"

    @property
    def name(self) -> str:
        what = "+".join(self.assets) if self.assets else self.job
        return f"{what}[{self.partition}]" if self.partition else what


STAND_INS = "tests.fixtures.queue_jobs"
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


@dataclass(frozen=True)
class DevServer:
    """A running ``dagster dev``, its instance's home and log, and the stand-in's release file."""

    url: str
    home: Path
    process: subprocess.Popen
    log: Path
    release: Path


@dataclass(frozen=True)
class RunTimes:
    """What the instance recorded of one run: its slot is held from launch to end."""

    submission: Submission
    tags: dict[str, str]
    status: dg.DagsterRunStatus
    enqueued: float  # RUN_ENQUEUED: submitted to the queue
    launched: float  # RUN_STARTING: the daemon took it from the queue and launched it
    started: float  # RUN_START: its process runs
    ended: float
    pool_steps: tuple[tuple[float, float], ...]  # (STEP_START, step end) of its "gpu" steps
    failures: tuple[str, ...]  # messages of its failed steps

    @property
    def gpu_tagged(self) -> bool:
        return GPU_RUN_TAGS.items() <= self.tags.items()


@pytest.fixture
def dagster_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    """``dagster dev`` with both code locations on a fresh instance, stopped at the end."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(REPO / "dagster.yaml")  # as env.sh links it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "LENSING_"))}
    env.update(
        DAGSTER_HOME=str(home),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        OMP_WAIT_POLICY="PASSIVE",
        LENSING_DATA_ROOT=str(tmp_path / "data"),
        LENSING_SUITE="101-102",
        LENSING_NSIDE="64",  # kappa maps in a second
        LENSING_NTHREADS="1",
        LENSING_ACCELERATOR="cpu",
        LENSING_AUTOMATION="off",  # no sensor or schedule launches runs of its own
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance this test reads
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    command = [sys.executable, "-m", "dagster", "dev", "-m", "lensing_assets", "-m", STAND_INS]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    release = tmp_path / "release_gpu"
    try:
        yield DevServer(f"http://127.0.0.1:{port}", home, process, log, release)
    finally:
        release.touch()  # a stand-in still holding ends by itself
        stop_process_group(process, timeout_s=60.0)


def _wait_for_locations(server: DevServer) -> dict[str, str]:
    """Poll until the webserver answers and every code location has loaded: {location: repo}."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"dagster dev exited ({server.process.returncode}):\n{tail(server.log)}")
        try:
            entries = graphql(server.url, LOCATIONS_QUERY, timeout_s=120.0)["workspaceOrError"][
                "locationEntries"
            ]
        except (urllib.error.URLError, OSError):
            entries = []
        if len(entries) == 2 and all(e["loadStatus"] == "LOADED" for e in entries):
            repos = {}
            for entry in entries:
                location = entry["locationOrLoadError"]
                assert location["__typename"] == "RepositoryLocation", location
                (repository,) = location["repositories"]
                repos[entry["name"]] = repository["name"]
            return repos
        if time.monotonic() > deadline:
            pytest.fail(f"code locations not loaded in {SERVER_START_TIMEOUT_S:.0f} s:\n{entries}")
        time.sleep(1.0)


def _launch(
    server: DevServer, repos: dict[str, str], submission: Submission, config: dict | None = None
) -> str:
    selector: dict[str, Any] = {
        "repositoryLocationName": submission.location,
        "repositoryName": repos[submission.location],
        "jobName": submission.job,
    }
    if submission.assets:
        selector["assetSelection"] = [{"path": [name]} for name in submission.assets]
    tags = [{"key": "dagster/partition", "value": submission.partition}]
    params = {
        "selector": selector,
        "runConfigData": {**IN_PROCESS, **(config or {})},
        "mode": "default",
        "executionMetadata": {"tags": tags if submission.partition else []},
    }
    result = graphql(server.url, LAUNCH_MUTATION, {"executionParams": params}, timeout_s=120.0)[
        "launchRun"
    ]
    assert result["__typename"] == "LaunchRunSuccess", (submission, result)
    return result["run"]["runId"]


def _poll(server: DevServer, what: str, timeout_s: float, done: Any) -> None:
    """Call *done* every half second until it is true; fail after *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{tail(server.log)}")
        time.sleep(0.5)


def _records(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(run_ids=run_ids)))


def _has_event(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> bool:
    return any(
        e.dagster_event is not None and e.dagster_event.event_type == kind
        for e in instance.all_logs(run_id)
    )


def _run_times(instance: dg.DagsterInstance, run_id: str, submission: Submission) -> RunTimes:
    (record,) = _records(instance, [run_id])
    times: dict[dg.DagsterEventType, list[tuple[float, str | None]]] = {}
    failures = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        times.setdefault(event.event_type, []).append((entry.timestamp, event.step_key))
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            failures.append(error.message if error else "")
    (enqueued,) = (t for t, _ in times[dg.DagsterEventType.RUN_ENQUEUED])
    (launched,) = (t for t, _ in times[dg.DagsterEventType.RUN_STARTING])
    starts = {key: t for t, key in times.get(dg.DagsterEventType.STEP_START, [])}
    ends = {
        key: t
        for kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
        for t, key in times.get(kind, [])
    }
    assert record.start_time is not None, record
    assert record.end_time is not None, record
    return RunTimes(
        submission=submission,
        tags=dict(record.dagster_run.tags),
        status=record.dagster_run.status,
        enqueued=enqueued,
        launched=launched,
        started=record.start_time,
        ended=record.end_time,
        pool_steps=tuple((t, ends[key]) for key, t in starts.items() if key in POOL_STEPS),
        failures=tuple(failures),
    )


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of half-open intervals [start, end) that hold one instant."""
    edges = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = current = 0
    for _, change in edges:  # at equal times an end comes before a start
        current += change
        most = max(most, current)
    return most


def _timeline(runs: list[RunTimes]) -> str:
    t0 = min(r.enqueued for r in runs)
    lines = [
        f"{r.submission.name:34} {'gpu' if r.gpu_tagged else '   '} {r.status.value:8}"
        f" queued {r.enqueued - t0:6.1f} launched {r.launched - t0:6.1f}"
        f" started {r.started - t0:6.1f} ended {r.ended - t0:6.1f}"
        + "".join(f"  gpu step {a - t0:.1f}-{b - t0:.1f}" for a, b in r.pool_steps)
        for r in sorted(runs, key=lambda r: r.launched)
    ]
    return "\n".join(["run timeline (s):", *lines])


@pytest.mark.slow
def test_daemon_queues_runs_and_keeps_the_limits(dagster_dev: DevServer) -> None:
    """With the daemon running, runs beyond the limits wait in the queue: never more than two
    runs hold a slot at once, never two GPU-tagged runs (real training runs and a run that only
    the tag limit holds wait while the stand-in holds the GPU), never two steps of the "gpu"
    pool (an untagged model run waits too), and every run ends: kappa maps and the stand-ins
    succeed, training without shards fails for that reason."""
    server = dagster_dev
    repos = _wait_for_locations(server)
    instance = dg.DagsterInstance.from_config(str(server.home))

    # The stand-in takes the GPU; once its step runs, the others are submitted.
    hold_config = {"ops": {HOLD_OP: {"config": {"release_file": str(server.release)}}}}
    hold_id = _launch(server, repos, HOLD, hold_config)
    _poll(
        server,
        "the stand-in's step started",
        STEP_START_TIMEOUT_S,
        lambda: _has_event(instance, hold_id, dg.DagsterEventType.STEP_START),
    )
    run_ids = {hold_id: HOLD}
    run_ids |= {_launch(server, repos, s): s for s in WHILE_HELD}
    kappa_ids = [i for i, s in run_ids.items() if s in KAPPA]
    held_ids = [i for i, s in run_ids.items() if s in HELD]

    def settled() -> bool:
        """The kappa runs ended SETTLE_S ago, and every held run is still queued, has ended,
        or has run SETTLE_S: the queue had its chances to launch what it must hold."""
        now = time.time()
        records = {r.dagster_run.run_id: r for r in _records(instance, list(run_ids))}

        def settle_ago(timestamp: float | None) -> bool:
            return timestamp is not None and now - timestamp > SETTLE_S

        if not all(settle_ago(records[i].end_time) for i in kappa_ids):
            return False
        return all(
            records[i].dagster_run.status == dg.DagsterRunStatus.QUEUED
            or records[i].dagster_run.is_finished
            or settle_ago(records[i].start_time)
            for i in held_ids
        )

    _poll(server, "the kappa runs ended while the GPU was held", RELEASE_TIMEOUT_S, settled)
    server.release.touch()

    def all_finished() -> bool:
        records = _records(instance, list(run_ids))
        return len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records)

    _poll(server, "every run finished", RUNS_TIMEOUT_S, all_finished)
    runs = [_run_times(instance, run_id, s) for run_id, s in run_ids.items()]
    instance.dispose()
    timeline = _timeline(runs)
    print(timeline)
    (hold,) = (r for r in runs if r.submission == HOLD)
    (untagged,) = (r for r in runs if r.submission == UNTAGGED_TRAINING)

    for run in runs:
        assert run.enqueued <= run.launched <= run.started <= run.ended, timeline
        if run.submission in (*TAGGED_TRAINING, UNTAGGED_TRAINING):
            assert run.status == dg.DagsterRunStatus.FAILURE, timeline
            assert run.failures, timeline
            assert all(MISSING_SHARDS in message for message in run.failures), run.failures
        else:
            assert run.status == dg.DagsterRunStatus.SUCCESS, (run.failures, timeline)
    # the real training jobs carry the GPU tag, a model asset materialized alone does not
    assert [r.gpu_tagged for r in runs] == [s in GPU_TAGGED for s in run_ids.values()]

    # The run queue: more runs than the limit waited at once, and at most two held a slot.
    most_waiting = _max_overlap([(r.enqueued, r.launched) for r in runs])
    assert most_waiting > MAX_CONCURRENT_RUNS, f"at most {most_waiting} queued\n{timeline}"
    most_running = _max_overlap([(r.launched, r.ended) for r in runs])
    assert most_running == MAX_CONCURRENT_RUNS, f"{most_running} runs at once\n{timeline}"

    # The GPU tag: the other GPU-tagged runs were queued while the stand-in held the GPU, and
    # no two GPU-tagged runs held a slot at the same time.
    gpu_runs = [r for r in runs if r.gpu_tagged]
    assert all(r.enqueued < hold.ended for r in gpu_runs), timeline
    most_gpu = _max_overlap([(r.launched, r.ended) for r in gpu_runs])
    assert most_gpu == 1, f"{most_gpu} GPU-tagged runs at once\n{timeline}"

    # The pool: the untagged model run was queued while the stand-in held the slot, and no
    # two steps of the pool ran at the same time.
    ((_, hold_step_end),) = hold.pool_steps
    assert untagged.enqueued < hold_step_end, timeline
    steps = [step for r in runs for step in r.pool_steps]
    assert len(steps) == 1 + len(TAGGED_TRAINING) + 1, timeline
    most_steps = _max_overlap(steps)
    assert most_steps == 1, f'{most_steps} steps of the "gpu" pool at once\n{timeline}'
