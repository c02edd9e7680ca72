"""Queue every configuration's models and reports, then the study, in the Dagster run queue.

``python -m lensing_assets.sweep`` submits, to the instance of ``DAGSTER_HOME``, one
``study_config_job`` run (compressor, NPE, FoM report, band powers, power-spectrum report,
Fisher forecast) per configuration ``LMAX|NOISE`` whose shards exist, then one ``study_job``
run (the comparison report). The runs wait in the queue (status QUEUED) until the daemon of
``dagster dev`` or ``dagster-daemon run`` launches them.

Every run carries the tag ``lensing/resource=gpu``, which the queue of the repository's
``dagster.yaml`` lets through one run at a time, in the order the runs were submitted: the
study run, submitted last, starts only after every configuration run has ended.

Options: ``--configs KEY ...`` (only these; each must have shards), ``--preset`` (training
settings written into the run config, so that they hold whatever ``LENSING_TRAINING_PRESET``
the code location runs with; default ``full`` with a CUDA device, else ``cpu_demo``),
``--dry-run`` (print what would be submitted). A configuration that already has a queued or
started ``study_config_job`` run is skipped. Runs are made from the code location of
``workspace.yaml`` (``--workspace``), the one ``dagster dev`` loads in the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

# `dagster job launch`'s own steps (dagster/_cli/job.py, 1.13): load the workspace, find the
# job, make the run from the remote job with its execution plan. Private to Dagster, so a
# new Dagster version may move them; tests/assets/test_sweep.py notices.
from dagster._cli.job import _create_run
from dagster._cli.workspace.cli_target import (
    WorkspaceOpts,
    get_code_location_from_workspace,
    get_remote_repository_from_code_location,
    get_workspace_from_cli_opts,
)
from dagster._config.validate import validate_config_from_snap

from lensing_assets.defs.models import GPU_RUN_TAGS
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_core.config import PlatformSettings
from lensing_core.inference.config import COMPRESSOR_PRESETS, TrainingSettings
from lensing_core.storage import DataRoot

if TYPE_CHECKING:
    from dagster._core.remote_representation.code_location import CodeLocation
    from dagster._core.remote_representation.external import RemoteJob, RemoteRepository
    from dagster._core.workspace.context import WorkspaceRequestContext

CONFIG_JOB = "study_config_job"
STUDY_JOB = "study_job"
PARTITION_TAG = "dagster/partition"
PRESET_TAG = "lensing/preset"
SWEEP_TAG = "lensing/sweep"  # one value per sweep: filter its runs in the UI
#: A configuration run in one of these states is not submitted again.
PENDING_STATUSES = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
SHARDS_HINT = (
    "build shards with `make demo`, or for one configuration: "
    "dagster asset materialize --select tile_shards --partition '200|des_y3'"
)
WATCH = (
    "Watch them: . ./env.sh && dagster dev, in the repository root and without -m (its "
    "daemon launches the queued runs of the code location {location!r} of workspace.yaml), "
    "then Runs at http://127.0.0.1:3000/runs"
)


class SweepError(Exception):
    """A sweep that cannot be submitted as asked; nothing was submitted."""


@dataclass(frozen=True)
class PlannedRun:
    """One run to submit: job, partition (``None`` for the study), run config and tags."""

    job: str
    partition: str | None
    run_config: dict[str, Any]
    tags: dict[str, str]

    def describe(self) -> str:
        """``JOB  PARTITION  preset P`` as the sweep prints it."""
        preset = self.tags.get(PRESET_TAG)
        line = f"{self.job:16s} {self.partition or '-':14s} " + (
            f"preset {preset}" if preset else ""
        )
        return line.rstrip()


def default_preset() -> str:
    """``full`` when torch sees a CUDA device, else ``cpu_demo``."""
    import torch  # a slow import: only when no --preset is given

    return "full" if torch.cuda.is_available() else "cpu_demo"


def training_run_config(training: TrainingSettings) -> dict[str, Any]:
    """Run config of ``study_config_job`` setting every field of both models' configs.

    Every field is written, so the runs train with *training* whatever settings the code
    location that runs them was started with.
    """
    return {
        "ops": {
            "compressor_model": {"config": dataclasses.asdict(training.compressor)},
            "npe_model": {"config": dataclasses.asdict(training.npe)},
        }
    }


def configurations(root: DataRoot, keys: Sequence[str] | None = None) -> list[str]:
    """
    The configuration keys (``LMAX|NOISE``) to sweep, in partition order.

    Parameters
    ----------
    root
        The data root whose shard manifests say which configurations exist.
    keys
        Keys asked for; every one must be a configuration whose manifest is a file. ``None``:
        every configuration whose manifest is a file.

    Raises
    ------
    SweepError
        A key is not a configuration, or its manifest is missing (the message names it).
    """
    known = dataset_partitions_def.get_partition_keys()
    if keys is None:
        return [key for key in known if _manifest(root, key).is_file()]
    problems = []
    for key in keys:
        if key not in known:
            problems.append(f"{key!r} is not a configuration; known: {', '.join(known)}")
        elif not _manifest(root, key).is_file():
            problems.append(
                f"configuration {key} has no shards: {_manifest(root, key)} is not a file; "
                f"make them with: dagster asset materialize --select tile_shards --partition "
                f"'{key}'"
            )
    if problems:
        raise SweepError("\n".join(problems))
    return [key for key in known if key in keys]


def _manifest(root: DataRoot, key: str) -> Path:
    lmax, noise = config_of(key)
    return root.shards(lmax, noise).manifest


def check_queue(instance: dg.DagsterInstance) -> None:
    """
    Check that the instance's queue runs GPU-tagged runs one at a time, in submission order.

    The study run waits for the configuration runs only because of this. In each pass the
    daemon (``QueuedRunCoordinatorDaemon._get_runs_to_dequeue``, Dagster 1.13) reads the
    queued runs oldest first (a stable sort on ``dagster/priority``, which the sweep leaves
    unset), counts the runs in progress against the tag limits, and gives a free slot to the
    first run that fits; the next GPU-tagged run finds the slot taken, even when the first
    one then waits for its op pool. So with a limit of one the GPU runs start one after the
    other, each after the one before has ended.

    Raises
    ------
    SweepError
        The run coordinator is not the queued one, or it sets no limit of one on the tag.
    """
    (key, value), *_ = GPU_RUN_TAGS.items()
    where = f"the instance at DAGSTER_HOME={instance.root_directory}"
    fix = "link the repository's dagster.yaml there (`. ./env.sh` does)"
    if not isinstance(instance.run_coordinator, dg.QueuedRunCoordinator):
        name = type(instance.run_coordinator).__name__
        raise SweepError(f"{where} runs a {name}, not the QueuedRunCoordinator: {fix}")
    queue = instance.get_concurrency_config().run_queue_config
    limits = queue.tag_concurrency_limits if queue else []
    if not any(
        limit["key"] == key and limit.get("value") in (value, None) and limit["limit"] == 1
        for limit in limits
    ):
        raise SweepError(
            f"{where} does not limit runs tagged {key}={value} to one at a time (its tag "
            f"limits: {list(limits)}), so the study run could start before the configuration "
            f"runs end: {fix}"
        )


def pending_config_runs(instance: dg.DagsterInstance) -> dict[str, dg.DagsterRun]:
    """Queued or started ``study_config_job`` runs by partition key."""
    runs = instance.get_runs(dg.RunsFilter(job_name=CONFIG_JOB, statuses=list(PENDING_STATUSES)))
    return {run.tags[PARTITION_TAG]: run for run in runs if PARTITION_TAG in run.tags}


def plan_runs(
    keys: Sequence[str], training: TrainingSettings, sweep_id: str
) -> tuple[list[PlannedRun], PlannedRun]:
    """The configuration runs of *keys* and the study run, with their configs and tags."""
    common = {**GPU_RUN_TAGS, SWEEP_TAG: sweep_id}
    run_config = training_run_config(training)
    config_runs = [
        PlannedRun(
            job=CONFIG_JOB,
            partition=key,
            run_config=run_config,
            tags={
                **common,
                **dataset_partitions_def.get_tags_for_partition_key(key),
                PRESET_TAG: training.preset,
            },
        )
        for key in keys
    ]
    return config_runs, PlannedRun(job=STUDY_JOB, partition=None, run_config={}, tags=common)


@dataclass(frozen=True)
class CodeLocationJobs:
    """The workspace, code location and repository that the runs are made from."""

    workspace: WorkspaceRequestContext
    location: CodeLocation
    repository: RemoteRepository

    def job(self, name: str) -> RemoteJob:
        """The remote job *name*; a missing one is a :class:`SweepError`."""
        if not self.repository.has_job(name):
            msg = f"code location {self.location.name!r} has no job {name!r}"
            raise SweepError(msg)
        return self.repository.get_full_job(name)


@contextmanager
def load_code_location(
    instance: dg.DagsterInstance, workspace_file: Path
) -> Iterator[CodeLocationJobs]:
    """The code location of *workspace_file*, served by a code server while in the block."""
    if not workspace_file.is_file():
        msg = (
            f"no workspace file {workspace_file}: run the sweep in the repository root, "
            "or name the file with --workspace"
        )
        raise SweepError(msg)
    opts = WorkspaceOpts(workspace=[str(workspace_file)])
    with get_workspace_from_cli_opts(
        instance, version=dg.__version__, workspace_opts=opts, log_level="WARNING"
    ) as workspace:
        try:
            location = get_code_location_from_workspace(workspace, None)
            repository = get_remote_repository_from_code_location(location, None)
        except Exception as err:  # click.UsageError, with the location's load error
            raise SweepError(f"cannot load the code location of {workspace_file}: {err}") from err
        yield CodeLocationJobs(workspace, location, repository)


def config_errors(jobs: CodeLocationJobs, runs: Sequence[PlannedRun]) -> list[str]:
    """What is wrong with the run config of each of *runs* for its job (empty: all valid)."""
    errors = []
    for run in runs:
        remote_job = jobs.job(run.job)
        if remote_job.root_config_key is None:
            errors.append(f"{run.job}: the code location gives no config schema")
            continue
        result = validate_config_from_snap(
            config_schema_snapshot=remote_job.config_schema_snapshot,
            config_type_key=remote_job.root_config_key,
            config_value=run.run_config,
        )
        errors.extend(
            f"{run.job} {run.partition or ''}: {error.message}" for error in result.errors or []
        )
    return errors


def submit(instance: dg.DagsterInstance, jobs: CodeLocationJobs, run: PlannedRun) -> str:
    """Create *run* from the code location as ``dagster job launch`` does, queue it; its id."""
    created = _create_run(
        instance=instance,
        code_location=jobs.location,
        remote_repo=jobs.repository,
        remote_job=jobs.job(run.job),
        run_config=run.run_config,
        tags=run.tags,
        op_selection=None,
        run_id=None,
    )
    return instance.submit_run(created.run_id, jobs.workspace).run_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lensing_assets.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        metavar="KEY",
        help="configurations LMAX|NOISE to sweep (default: every one whose shards exist)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(COMPRESSOR_PRESETS),
        help="training settings (default: full with a CUDA device, else cpu_demo)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be submitted, submit nothing"
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path("workspace.yaml"),
        help="workspace file of the code location (default: ./workspace.yaml)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Submit the sweep; 0 when submitted (or nothing left to submit), 1 on an error."""
    args = _parser().parse_args(argv)
    try:
        return _sweep(args)
    except SweepError as err:
        print(f"sweep: error: {err}", file=sys.stderr)
        return 1


def _sweep(args: argparse.Namespace) -> int:
    settings = PlatformSettings.from_env()
    root = DataRoot(settings.data_root)
    keys = configurations(root, args.configs)
    if not keys:
        raise SweepError(
            f"no configuration has shards under {root.hf_dataset.data} (looked for "
            f"lmax_*_*/shards.json): {SHARDS_HINT}"
        )
    training = TrainingSettings.from_preset(
        args.preset or default_preset(),
        accelerator=settings.training.accelerator,
        symmetries=settings.training.compressor.symmetries,
    )
    with dg.DagsterInstance.get() as instance:
        check_queue(instance)
        runs = _runs_to_submit(instance, keys, training)
        if not runs:
            print("nothing to submit: the configurations' runs and the study run are queued")
            return 0
        with load_code_location(instance, args.workspace) as jobs:
            errors = config_errors(jobs, runs)
            if errors:
                raise SweepError("invalid run config, nothing submitted:\n" + "\n".join(errors))
            if args.dry_run:
                for run in runs:
                    print(f"would submit  {run.describe()}")
                print(f"dry run: nothing submitted to the instance at {instance.root_directory}")
                return 0
            for run in runs:
                print(f"submitted {submit(instance, jobs, run)}  {run.describe()}", flush=True)
        print(
            f"{len(runs)} runs queued in the instance at {instance.root_directory}, one GPU run "
            "at a time: the study run starts after the others end."
        )
        print(WATCH.format(location=jobs.location.name))
    return 0


def _runs_to_submit(
    instance: dg.DagsterInstance, keys: Sequence[str], training: TrainingSettings
) -> list[PlannedRun]:
    """The runs of *keys* not queued or started yet, then the study run unless one waits.

    A study run already queued is enough when no configuration run is added: it runs after
    every configuration run queued before it.
    """
    pending = pending_config_runs(instance)
    for key in keys:
        if run := pending.get(key):
            print(f"skip      {CONFIG_JOB} {key}: run {run.run_id} is {run.status.value}")
    config_runs, study_run = plan_runs(
        [key for key in keys if key not in pending], training, time.strftime("%Y%m%dT%H%M%S")
    )
    queued_study = instance.get_runs(
        dg.RunsFilter(job_name=STUDY_JOB, statuses=[dg.DagsterRunStatus.QUEUED], tags=GPU_RUN_TAGS),
        limit=1,
    )
    if queued_study and not config_runs:
        print(f"skip      {STUDY_JOB}: run {queued_study[0].run_id} is QUEUED after them")
        return []
    return [*config_runs, study_run]


if __name__ == "__main__":
    sys.exit(main())
