"""Dask clusters for the platform's batches: on this machine, at a scheduler, or on SLURM.

:class:`ClusterSettings` says which cluster (read once from the ``LENSING_DASK_*`` and
``LENSING_SLURM_*`` variables by :meth:`ClusterSettings.from_env`); :func:`open_client` starts
it, or connects to it, and yields a ``distributed.Client``; :func:`describe` says in one line
what the client is connected to, with its dashboard; :func:`slurm_job_script` is the script
each SLURM job would run, made without submitting anything. ``dask``, ``distributed`` and
``dask_jobqueue`` are imported only when a cluster is opened or a job script is made.

The variables:

==================================  =============================================================
``LENSING_DASK_CLUSTER``            ``local`` (default: worker processes on this machine),
                                    ``address`` (an existing scheduler) or ``slurm`` (workers
                                    in SLURM jobs, through dask-jobqueue)
``LENSING_DASK_WORKERS``            ``local``: worker processes (default: one per core)
``LENSING_DASK_THREADS``            ``local``: threads per worker process (default 1)
``LENSING_DASK_MEMORY``             ``local``: memory limit per worker process, such as ``4GB``
                                    (default ``auto``: this machine's memory shared out)
``LENSING_DASK_ADDRESS``            ``address``: the scheduler, such as ``tcp://10.0.0.5:8786``
``LENSING_DASK_TIMEOUT``            ``address``: seconds to wait for the scheduler (default 10)
``LENSING_DASK_DASHBOARD``          where the dashboard listens, ``HOST:PORT`` (default
                                    ``127.0.0.1:0`` for ``local``, ``:0`` for ``slurm``: a free
                                    port; :func:`describe` gives the link)
``LENSING_SLURM_QUEUE``             partition of the worker jobs (``#SBATCH -p``; default: the
                                    cluster's default partition)
``LENSING_SLURM_ACCOUNT``           account charged for the jobs (``#SBATCH -A``; optional)
``LENSING_SLURM_CORES``             cores of one job: threads of its workers (default 1)
``LENSING_SLURM_PROCESSES``         worker processes per job, sharing its cores and memory
                                    (default 1)
``LENSING_SLURM_MEMORY``            memory of one job, such as ``8GB`` (default ``4GB``)
``LENSING_SLURM_WALLTIME``          time limit of one job, ``HH:MM:SS`` or another SLURM time
                                    format (default ``01:00:00``)
``LENSING_SLURM_JOBS``              jobs submitted when the cluster opens (default 1)
``LENSING_SLURM_WAIT``              seconds to wait for the first worker to join (default 600)
``LENSING_SLURM_PYTHON``            Python of the workers (default: this process's interpreter)
``LENSING_SLURM_PROLOGUE``          shell lines run before the worker starts, one per line (for
                                    example ``source /shared/lensing/env.sh``)
``LENSING_SLURM_DIRECTIVES``        more ``#SBATCH`` options, split as a shell would (for
                                    example ``--qos=short --constraint=skylake``)
``LENSING_SLURM_LOCAL_DIR``         node-local scratch folder of the workers (spilled data)
``LENSING_SLURM_LOG_DIR``           folder of the jobs' ``.out`` and ``.err`` files (default:
                                    none; SLURM then writes ``slurm-JOBID.out`` where the
                                    client runs)
``LENSING_SLURM_INTERFACE``         network interface of the scheduler and the workers, such
                                    as ``ib0`` (default: the host's address)
==================================  =============================================================
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

#: The kinds of cluster :func:`open_client` opens.
CLUSTER_KINDS = ("local", "address", "slurm")

#: ``dask-worker`` job name of the SLURM jobs (``#SBATCH -J``; also the log files' prefix).
SLURM_JOB_NAME = "lensing-dask"

#: What :func:`slurm_job_script` writes where the scheduler's address goes.
SCRIPT_SCHEDULER_PLACEHOLDER = "tcp://<scheduler-address>:8786"

# minutes | minutes:seconds | hours:minutes:seconds | days-hours[:minutes[:seconds]]
_WALLTIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}")


class ClusterError(RuntimeError):
    """A Dask cluster could not be opened."""


class ClusterUnreachableError(ClusterError):
    """The scheduler at ``LENSING_DASK_ADDRESS`` did not answer."""


class JobRejectedError(ClusterError):
    """SLURM refuses the worker job (unknown partition, more memory than a node has, ...)."""


class WorkersMissingError(ClusterError):
    """The cluster started but no worker joined it in time (SLURM jobs still queued or failed)."""


@dataclass(frozen=True)
class ClusterSettings:
    """
    Which Dask cluster the batches run on, and its size.

    Each field is read from the variable named in the module docstring; fields of another
    kind of cluster are ignored.

    Attributes
    ----------
    kind
        ``"local"``, ``"address"`` or ``"slurm"`` (:data:`CLUSTER_KINDS`).
    n_workers
        ``local``: worker processes; ``None`` for one per core (``os.cpu_count()``).
    threads_per_worker
        ``local``: threads of each worker process.
    memory_limit
        ``local``: memory limit of each worker process (``"4GB"``; ``"auto"`` shares out this
        machine's memory).
    address
        ``address``: the scheduler's address, ``tcp://HOST:PORT``.
    connect_timeout_s
        ``address``: how long to wait for the scheduler to answer (s).
    dashboard_address
        ``HOST:PORT`` of the dashboard of a scheduler started here; ``None`` for a free port
        (on loopback for ``local``, on every interface for ``slurm``).
    queue
        ``slurm``: partition of the jobs; ``None`` for the cluster's default.
    account
        ``slurm``: account charged; ``None`` for the user's default.
    cores
        ``slurm``: cores of one job, shared by its worker processes as threads.
    processes
        ``slurm``: worker processes of one job.
    memory
        ``slurm``: memory of one job (``"8GB"``), shared by its worker processes.
    walltime
        ``slurm``: time limit of one job, in a SLURM time format (``"01:00:00"``).
    n_jobs
        ``slurm``: jobs submitted when the cluster opens.
    worker_timeout_s
        ``slurm``: how long to wait for the first worker to join (s): queue time included.
    python
        ``slurm``: Python interpreter of the workers (the same environment, on a shared file
        system, as this process's).
    local_directory
        Node-local scratch folder of the workers (``local`` and ``slurm``); ``None`` for the
        default (a temporary folder).
    log_directory
        ``slurm``: folder of the jobs' output files; ``None`` for SLURM's default
        (``slurm-JOBID.out`` in the folder the client runs in).
    job_extra_directives
        ``slurm``: more ``#SBATCH`` options, one per item (``"--qos=short"``).
    job_script_prologue
        ``slurm``: shell lines run before the worker starts (``"source env.sh"``).
    interface
        ``slurm``: network interface of the scheduler and the workers (``"ib0"``); ``None``
        for the host's address.
    """

    kind: str = "local"
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    address: str | None = None
    connect_timeout_s: float = 10.0
    dashboard_address: str | None = None
    queue: str | None = None
    account: str | None = None
    cores: int = 1
    processes: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    n_jobs: int = 1
    worker_timeout_s: float = 600.0
    python: str = field(default_factory=lambda: sys.executable)
    local_directory: str | None = None
    log_directory: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    interface: str | None = None

    def __post_init__(self) -> None:
        from lensing_core.config import _check_choice

        _check_choice("LENSING_DASK_CLUSTER", self.kind, CLUSTER_KINDS)
        if self.kind == "address" and not self.address:
            msg = "LENSING_DASK_CLUSTER=address needs LENSING_DASK_ADDRESS (tcp://HOST:PORT)"
            raise ValueError(msg)
        for variable, number in (
            ("LENSING_DASK_WORKERS", self.n_workers),
            ("LENSING_DASK_THREADS", self.threads_per_worker),
            ("LENSING_SLURM_CORES", self.cores),
            ("LENSING_SLURM_PROCESSES", self.processes),
            ("LENSING_SLURM_JOBS", self.n_jobs),
        ):
            if number is not None and number < 1:
                msg = f"{variable}={number!r} must be at least 1"
                raise ValueError(msg)
        for variable, seconds in (
            ("LENSING_DASK_TIMEOUT", self.connect_timeout_s),
            ("LENSING_SLURM_WAIT", self.worker_timeout_s),
        ):
            if not seconds > 0:
                msg = f"{variable}={seconds!r} must be a positive number of seconds"
                raise ValueError(msg)
        if self.memory_limit != "auto":
            _check_bytes("LENSING_DASK_MEMORY", self.memory_limit)
        if self.kind == "slurm":
            _check_bytes("LENSING_SLURM_MEMORY", self.memory)
            if not _WALLTIME.fullmatch(self.walltime):
                msg = (
                    f"LENSING_SLURM_WALLTIME={self.walltime!r} is not a SLURM time such as "
                    "'01:00:00', '90' (minutes) or '1-12:00:00'"
                )
                raise ValueError(msg)
            if self.cores % self.processes:
                msg = (
                    f"LENSING_SLURM_CORES={self.cores} is not a multiple of "
                    f"LENSING_SLURM_PROCESSES={self.processes}: each worker process gets "
                    "cores / processes threads"
                )
                raise ValueError(msg)
            for directive in self.job_extra_directives:
                if not directive.startswith("-"):
                    msg = (
                        f"LENSING_SLURM_DIRECTIVES: {directive!r} is not an sbatch option "
                        "(such as '--qos=short')"
                    )
                    raise ValueError(msg)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClusterSettings:
        """
        Settings from the variables of *environ* (this process's if not given).

        Raises
        ------
        ValueError
            A variable has a value that is not allowed (the message names it and the value).
        """
        from lensing_core.config import _integer

        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        defaults = cls()
        return cls(
            kind=(text("LENSING_DASK_CLUSTER") or defaults.kind).lower(),
            n_workers=_integer(env, "LENSING_DASK_WORKERS", None),
            threads_per_worker=_integer(env, "LENSING_DASK_THREADS", 1) or 1,
            memory_limit=text("LENSING_DASK_MEMORY") or defaults.memory_limit,
            address=text("LENSING_DASK_ADDRESS"),
            connect_timeout_s=float(_integer(env, "LENSING_DASK_TIMEOUT", 10) or 10),
            dashboard_address=text("LENSING_DASK_DASHBOARD"),
            queue=text("LENSING_SLURM_QUEUE"),
            account=text("LENSING_SLURM_ACCOUNT"),
            cores=_integer(env, "LENSING_SLURM_CORES", 1) or 1,
            processes=_integer(env, "LENSING_SLURM_PROCESSES", 1) or 1,
            memory=text("LENSING_SLURM_MEMORY") or defaults.memory,
            walltime=text("LENSING_SLURM_WALLTIME") or defaults.walltime,
            n_jobs=_integer(env, "LENSING_SLURM_JOBS", 1) or 1,
            worker_timeout_s=float(_integer(env, "LENSING_SLURM_WAIT", 600) or 600),
            python=text("LENSING_SLURM_PYTHON") or defaults.python,
            local_directory=text("LENSING_SLURM_LOCAL_DIR"),
            log_directory=text("LENSING_SLURM_LOG_DIR"),
            job_extra_directives=tuple(_split("LENSING_SLURM_DIRECTIVES", env)),
            job_script_prologue=tuple(
                line.strip()
                for line in env.get("LENSING_SLURM_PROLOGUE", "").splitlines()
                if line.strip()
            ),
            interface=text("LENSING_SLURM_INTERFACE"),
        )


def _check_bytes(variable: str, value: str) -> None:
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except ValueError:
        msg = f"{variable}={value!r} is not an amount of memory such as '8GB' or '512MiB'"
        raise ValueError(msg) from None


def _split(variable: str, env: Mapping[str, str]) -> list[str]:
    try:
        return shlex.split(env.get(variable, ""))
    except ValueError as err:  # unbalanced quotes
        msg = f"{variable}={env[variable]!r} cannot be split into options: {err}"
        raise ValueError(msg) from None


# --- opening a cluster ----------------------------------------------------------------------


@contextlib.contextmanager
def open_client(settings: ClusterSettings) -> Iterator[Client]:
    """
    A ``distributed.Client`` of the cluster *settings* describe, closed on exit.

    Parameters
    ----------
    settings
        ``local``: a ``LocalCluster`` of worker processes on this machine; ``address``: the
        scheduler at ``settings.address``; ``slurm``: a ``dask_jobqueue.SLURMCluster`` whose
        scheduler runs in this process, with ``settings.n_jobs`` jobs submitted.

    Yields
    ------
        The connected client, once at least one worker has joined (``local``, ``slurm``).
        On exit the client closes, and so does a cluster opened here (its SLURM jobs are
        cancelled); an external scheduler (``address``) keeps running.

    Raises
    ------
    ClusterUnreachableError
        ``address``: the scheduler did not answer within ``settings.connect_timeout_s``.
    JobRejectedError
        ``slurm``: ``sbatch --test-only`` refuses the worker job (SLURM's reason is in the
        message); nothing was submitted.
    WorkersMissingError
        ``slurm``: no worker joined within ``settings.worker_timeout_s`` (the message gives
        the jobs' ids, their state in ``squeue`` and where their logs are); the jobs are
        cancelled.
    """
    opener = {"local": _local_client, "address": _address_client, "slurm": _slurm_client}
    with opener[settings.kind](settings) as client:
        logger.info("dask: %s", describe(client))
        yield client


@contextlib.contextmanager
def _local_client(settings: ClusterSettings) -> Iterator[Client]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=settings.n_workers or os.cpu_count() or 1,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            dashboard_address=settings.dashboard_address or "127.0.0.1:0",
            local_directory=settings.local_directory,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _address_client(settings: ClusterSettings) -> Iterator[Client]:
    from distributed import Client

    address = settings.address
    try:
        client = Client(address, timeout=settings.connect_timeout_s)
    except OSError as err:  # TimeoutError and refused connections alike
        msg = (
            f"cannot reach the Dask scheduler at {address} (LENSING_DASK_ADDRESS): "
            f"no answer within {settings.connect_timeout_s:g} s ({type(err).__name__}: {err}); "
            "is the scheduler running, and is the address reachable from this host?"
        )
        raise ClusterUnreachableError(msg) from err
    with client:  # close(), never shutdown(): the scheduler is not ours to stop
        yield client


@contextlib.contextmanager
def _slurm_client(settings: ClusterSettings) -> Iterator[Client]:
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    if settings.log_directory:  # SLURM does not create it: a job would fail without a word
        Path(settings.log_directory).mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(
        **_slurm_job_kwargs(settings),
        scheduler_options={"dashboard_address": settings.dashboard_address or ":0"},
        silence_logs=logging.ERROR,
    )
    try:
        # dask-jobqueue submits in the background and only logs sbatch's refusal: ask first
        _check_job_accepted(cluster.job_script(), settings)
        with Client(cluster) as client:
            cluster.scale(jobs=settings.n_jobs)
            try:
                client.wait_for_workers(1, timeout=settings.worker_timeout_s)
            except TimeoutError:
                job_ids = [job.job_id for job in cluster.workers.values() if job.job_id]
                raise WorkersMissingError(_no_worker_message(settings, job_ids)) from None
            yield client
    except BaseException:
        _close_after_error(cluster)
        raise
    cluster.close()  # cancels the jobs


def _close_after_error(cluster: Any) -> None:
    """Close *cluster* while an error is on its way out: that error is the one to report."""
    try:
        cluster.close()
    except Exception:  # a job that never started fails distributed's close-time assertion
        logger.warning("closing the SLURM cluster after an error failed too", exc_info=True)


def _check_job_accepted(script: str, settings: ClusterSettings) -> None:
    """``sbatch --test-only`` on *script*: SLURM's reason, at once, if it would refuse the job."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="lensing-dask-") as file:
        file.write(script)
        file.flush()
        try:
            result = subprocess.run(
                ["sbatch", "--test-only", file.name],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except FileNotFoundError:
            msg = "LENSING_DASK_CLUSTER=slurm, but sbatch is not on this host's PATH"
            raise JobRejectedError(msg) from None
    if result.returncode != 0:
        partition = settings.queue or "the default partition"
        msg = (
            f"sbatch refuses the Dask worker job for {partition} (LENSING_SLURM_QUEUE) with "
            f"{settings.cores} cores, {settings.memory} and {settings.walltime} "
            f"(LENSING_SLURM_CORES, _MEMORY, _WALLTIME): {result.stderr.strip()}"
        )
        raise JobRejectedError(msg)


def _slurm_job_kwargs(settings: ClusterSettings) -> dict[str, Any]:
    """Keywords of ``SLURMCluster`` and ``SLURMJob`` that describe one job."""
    directives = list(settings.job_extra_directives)
    if settings.log_directory:
        # as directives, not dask-jobqueue's log_directory: that creates the folder even
        # when only a script is wanted (open_client creates it)
        logs = f"{settings.log_directory}/{SLURM_JOB_NAME}-%j"
        directives = [f"--output={logs}.out", f"--error={logs}.err", *directives]
    return {
        "queue": settings.queue,
        "account": settings.account,
        "cores": settings.cores,
        "processes": settings.processes,
        "memory": settings.memory,
        "walltime": settings.walltime,
        "python": settings.python,
        "local_directory": settings.local_directory,
        "job_extra_directives": directives,
        "job_script_prologue": list(settings.job_script_prologue),
        "interface": settings.interface,
        "job_name": SLURM_JOB_NAME,
    }


def _no_worker_message(settings: ClusterSettings, job_ids: list[str]) -> str:
    partition = settings.queue or "the default partition"
    if settings.log_directory:
        logs = f"{settings.log_directory}/{SLURM_JOB_NAME}-JOBID.out and .err"
    else:
        logs = f"slurm-JOBID.out in {os.getcwd()} (set LENSING_SLURM_LOG_DIR to choose)"
    message = (
        f"no Dask worker joined within {settings.worker_timeout_s:g} s (LENSING_SLURM_WAIT) "
        f"from {settings.n_jobs} SLURM job(s) submitted to {partition} "
        f"(LENSING_SLURM_QUEUE); job ids {job_ids or 'none: did sbatch fail? see the log'}; "
        f"squeue says: {_squeue_states(job_ids)}; the jobs' output is in {logs}"
    )
    if settings.log_directory and job_ids:
        err = Path(settings.log_directory, f"{SLURM_JOB_NAME}-{job_ids[0]}.err")
        with contextlib.suppress(OSError):  # not written yet, or not visible from here
            message += f"\n--- end of {err}:\n{err.read_text(errors='replace')[-1000:]}"
    return message


def _squeue_states(job_ids: list[str]) -> str:
    """``JOBID STATE REASON`` of *job_ids* from ``squeue``, or why it could not be asked."""
    if not job_ids:
        return "nothing to ask"
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", ",".join(job_ids), "--format", "%i %T %R"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"(squeue failed: {err})"
    return "; ".join(result.stdout.split("\n")).strip("; ") or (
        result.stderr.strip() or "the jobs are no longer in the queue"
    )


# --- describing ----------------------------------------------------------------------------


def dashboard_link(client: Client) -> str | None:
    """The dashboard URL of *client*'s scheduler (``http://HOST:PORT/status``), or ``None``."""
    try:
        link = client.dashboard_link
    except (AttributeError, KeyError):  # a scheduler without the dashboard service
        return None
    return str(link) if link else None


def describe(client: Client) -> str:
    """
    What *client* is connected to, in one line.

    For example ``"local cluster, 2 workers, dashboard http://127.0.0.1:40123/status"`` or
    ``"SLURM cluster (scheduler tcp://10.0.0.5:35791), 4 workers, dashboard ..."``.
    """
    cluster = client.cluster
    name = type(cluster).__name__
    if cluster is None:
        what = f"scheduler {client.scheduler.address if client.scheduler else '?'}"
    elif name == "LocalCluster":
        what = "local cluster"
    elif name == "SLURMCluster":
        what = f"SLURM cluster (scheduler {cluster.scheduler_address})"
    else:
        what = f"{name} (scheduler {cluster.scheduler_address})"
    n_workers = len(client.nthreads())
    workers = f"{n_workers} worker{'' if n_workers == 1 else 's'}"
    link = dashboard_link(client)
    return f"{what}, {workers}, " + (f"dashboard {link}" if link else "no dashboard")


# --- job scripts ---------------------------------------------------------------------------


def slurm_job_script(settings: ClusterSettings) -> str:
    """
    The batch script each SLURM job of *settings* runs, made without submitting anything.

    The one dask-jobqueue submits, but with :data:`SCRIPT_SCHEDULER_PLACEHOLDER` where the
    scheduler's address goes (known once the scheduler starts) and ``dummy-name`` as the
    worker's name. Nothing is created (:func:`open_client` creates the log folder).
    """
    from dask_jobqueue.slurm import SLURMJob

    job = SLURMJob(SCRIPT_SCHEDULER_PLACEHOLDER, name="dummy-name", **_slurm_job_kwargs(settings))
    return str(job.job_script())
