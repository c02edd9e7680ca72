"""Backfills through the daemon, as the UI submits them: one run per partition against batches.

For each path, a fresh instance and data root, ``dagster-daemon run``, the sims registered,
then an asset backfill (what the UI's "Materialize" of a partition selection makes) of the
kappa maps of ``--sims`` sims, then one of their tiles at every lmax (from the kappa maps just
made). Paths:

``old``
    The tree at ``--baseline`` (default: the commit before batching), checked out in a
    temporary git worktree: no backfill policy, so one run per partition, each step in a
    subprocess of its run, the kappa checks a step of their own.
``new-1``, ``new-2``
    This tree: batches of ``LENSING_KAPPA_PER_RUN`` / ``LENSING_TILES_PER_RUN`` partitions per
    run, on a local Dask cluster of 1 or 2 worker processes (one thread each).

Printed per path and stage: partitions, runs, wall time (submission to the last run's end,
so it includes the daemon's backfill and queue ticks), the sum of step durations (the event
log's step start to end, "step compute"), the sum of run durations, the time runs spent
outside their steps (start-up and wrap-up of each run process) per partition and as a
fraction of step compute, and throughput; then the ratio of the 2-worker to the 1-worker
throughput (kappa and tiles together) and wall time per sim of the tiles. Runs are queued
by the repository's ``dagster.yaml``: at most 2 at once, and one kappa or tiles batch at a
time in the new tree (the ``data`` pool), so ``wall - steps`` is what orchestration costs.

Usage: ``python bench/bench_backfill.py [--nside 1024] [--sims 16] [--paths old,new-1,new-2]``
(about 40 minutes at the defaults on 2 cores). Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.fixtures: the daemon helpers the tests use

from tests.fixtures.daemon import backfill_runs, start_daemon, wait_for_backfill  # noqa: E402
from tests.fixtures.servers import stop_process_group  # noqa: E402

BASELINE = "1ca32bf"  # the last commit before batched backfills
LMAXES = "200,400,600,800,1000"


@dataclass
class Stage:
    """What one backfill of one path cost."""

    path: str
    stage: str
    partitions: int
    runs: int
    wall_s: float
    step_s: float
    run_s: float

    @property
    def overhead_s(self) -> float:
        """Run durations minus step durations (s): the run's start-up and wrap-up."""
        return self.run_s - self.step_s

    def line(self) -> str:
        """The stage's figures on one line."""
        per = self.overhead_s / max(self.partitions, 1)
        return (
            f"{self.path:6s} {self.stage:6s} {self.partitions:4d} partitions {self.runs:4d} runs  "
            f"wall {self.wall_s:7.1f} s  steps {self.step_s:7.1f} s  runs {self.run_s:7.1f} s  "
            f"in runs outside steps {per:5.2f} s/partition "
            f"({self.overhead_s / max(self.step_s, 1e-9):5.1%} of steps)  "
            f"{60 * self.partitions / self.wall_s:6.1f} partitions/min"
        )


def _durations(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """(run duration, sum of its step durations) in seconds, from the event log."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None, run_id
    assert record.start_time, run_id
    assert record.end_time, run_id
    starts: dict[str, float] = {}
    step_s = 0.0
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            step_s += entry.timestamp - starts.pop(event.step_key, entry.timestamp)
    return record.end_time - record.start_time, step_s


def _backfill(env: dict[str, str], code: Path, args: list[str], log: Path) -> str:
    """Submit the backfill with this tree's CLI (the old tree has none); its id."""
    out = subprocess.run(
        [sys.executable, "-m", "lensing_assets.backfill", *args],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    log.open("a").write(out)
    return out.split()[1].rstrip(":")


def run_path(
    name: str, code: Path, folder: Path, nside: int, n_sims: int, workers: int
) -> list[Stage]:
    """Both backfills of one path; the daemon and the runs import the tree at *code*."""
    home, data = folder / "dagster_home", folder / "data"
    home.mkdir(parents=True)
    (home / "dagster.yaml").symlink_to(code / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "LENSING_"))}
    env.update(
        DAGSTER_HOME=str(home),
        LENSING_DATA_ROOT=str(data),
        LENSING_SUITE=f"101-{100 + n_sims}",
        LENSING_NSIDE=str(nside),
        LENSING_AUTOMATION="off",
        LENSING_DASK_WORKERS=str(workers),
        LENSING_DASK_THREADS="1",
        PYTHONPATH=str(code),
        OMP_WAIT_POLICY="PASSIVE",
    )
    subprocess.run([sys.executable, "-m", "lensing_assets.register"], cwd=code, env=env, check=True)
    os.environ["DAGSTER_HOME"] = str(home)  # dagster.yaml's storage reads it
    instance = dg.DagsterInstance.from_config(str(home))
    log = folder / "daemon.log"
    daemon = start_daemon(env, log, code)
    stages = []
    try:
        for stage, select in (("kappa", "kappa_maps"), ("tiles", "tiles")):
            start = time.monotonic()
            backfill_id = _backfill(env, code, ["--select", select, "--lmax", LMAXES], log)
            wait_for_backfill(instance, backfill_id, log, timeout_s=6 * 3600)
            wall = time.monotonic() - start
            runs = backfill_runs(instance, backfill_id)
            durations = [_durations(instance, run.run_id) for run in runs]
            n = n_sims if stage == "kappa" else 5 * n_sims
            stages.append(
                Stage(
                    name,
                    stage,
                    n,
                    len(runs),
                    wall,
                    sum(step for _, step in durations),
                    sum(run for run, _ in durations),
                )
            )
            print(stages[-1].line(), flush=True)
    finally:
        stop_process_group(daemon, timeout_s=60.0)
    return stages


def main() -> int:
    """Run the paths, print their figures, write bench/out/bench_backfill.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nside", type=int, default=1024)
    parser.add_argument("--sims", type=int, default=16)
    parser.add_argument("--paths", default="old,new-1,new-2")
    parser.add_argument(
        "--old-sims", type=int, help="sims of the old path (default --sims; it is slow)"
    )
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="bench_backfill_"))
    stages: list[Stage] = []
    print(f"bench_backfill: nside {args.nside}, {args.sims} sims, in {top}", flush=True)
    try:
        for name in args.paths.split(","):
            code = REPO
            if name == "old":
                code = top / "baseline"
                subprocess.run(
                    ["git", "worktree", "add", "--detach", str(code), args.baseline],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                )
            workers = 2 if name == "new-2" else 1
            n_sims = (args.old_sims or args.sims) if name == "old" else args.sims
            stages += run_path(name, code, top / name, args.nside, n_sims, workers)
    finally:
        if (top / "baseline").exists():
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(top / "baseline")], cwd=REPO
            )
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    by = {(s.path, s.stage): s for s in stages}
    if ("new-1", "kappa") in by and ("new-2", "kappa") in by:
        one = sum(by["new-1", st].wall_s for st in ("kappa", "tiles"))
        two = sum(by["new-2", st].wall_s for st in ("kappa", "tiles"))
        print(f"kappa + tiles throughput, 2 workers / 1 worker: {one / two:.2f}x")
    for name in ("old", "new-1", "new-2"):
        if (name, "tiles") in by:
            tiles = by[name, "tiles"]
            print(f"{name}: tiles {tiles.wall_s / (tiles.partitions / 5):.1f} s of wall per sim")
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_backfill.json").write_text(
        json.dumps({"args": vars(args), "stages": [asdict(s) for s in stages]}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
