"""Dask clusters: settings from the environment, local, at an address, on SLURM, a killed worker."""

from __future__ import annotations

import operator
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lensing_core.cluster import (
    SCRIPT_SCHEDULER_PLACEHOLDER,
    SLURM_JOB_NAME,
    ClusterSettings,
    ClusterUnreachableError,
    JobRejectedError,
    WorkersMissingError,
    describe,
    open_client,
    slurm_job_script,
)
from tests.fixtures.servers import free_port
from tests.fixtures.slurm import SlurmTestCluster


def test_importing_the_module_loads_no_dask() -> None:
    """dask, distributed and dask_jobqueue load only when a cluster or a script is made."""
    code = (
        "import sys, lensing_core.cluster; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'dask', 'distributed', 'dask_jobqueue', 'dagster'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


# --- settings ----------------------------------------------------------------------------


def test_defaults_are_a_local_cluster_of_one_worker_per_core() -> None:
    settings = ClusterSettings.from_env({})
    assert settings == ClusterSettings()
    assert settings.kind == "local"
    assert (settings.n_workers, settings.threads_per_worker) == (None, 1)  # None: a core each
    assert (settings.memory, settings.walltime, settings.n_jobs) == ("4GB", "01:00:00", 1)
    assert settings.job_script_prologue == settings.job_extra_directives == ()
    assert settings.python == sys.executable


def test_every_variable_reaches_its_setting() -> None:
    settings = ClusterSettings.from_env(
        {
            "LENSING_DASK_CLUSTER": "SLURM",
            "LENSING_DASK_WORKERS": "3",
            "LENSING_DASK_THREADS": "2",
            "LENSING_DASK_MEMORY": "2GB",
            "LENSING_DASK_ADDRESS": "tcp://10.0.0.5:8786",
            "LENSING_DASK_TIMEOUT": "7",
            "LENSING_DASK_DASHBOARD": ":8787",
            "LENSING_SLURM_QUEUE": "short",
            "LENSING_SLURM_ACCOUNT": "des",
            "LENSING_SLURM_CORES": "8",
            "LENSING_SLURM_PROCESSES": "2",
            "LENSING_SLURM_MEMORY": "32GB",
            "LENSING_SLURM_WALLTIME": "1-12:00:00",
            "LENSING_SLURM_JOBS": "4",
            "LENSING_SLURM_WAIT": "1200",
            "LENSING_SLURM_PYTHON": "/shared/lensing/.venv/bin/python",
            "LENSING_SLURM_PROLOGUE": "module load gcc\n  source /shared/lensing/env.sh \n\n",
            "LENSING_SLURM_DIRECTIVES": "--qos=short --comment='lensing tiles'",
            "LENSING_SLURM_LOCAL_DIR": "/scratch/dask",
            "LENSING_SLURM_LOG_DIR": "/shared/logs",
            "LENSING_SLURM_INTERFACE": "ib0",
        }
    )
    assert settings == ClusterSettings(
        kind="slurm",
        n_workers=3,
        threads_per_worker=2,
        memory_limit="2GB",
        address="tcp://10.0.0.5:8786",
        connect_timeout_s=7.0,
        dashboard_address=":8787",
        queue="short",
        account="des",
        cores=8,
        processes=2,
        memory="32GB",
        walltime="1-12:00:00",
        n_jobs=4,
        worker_timeout_s=1200.0,
        python="/shared/lensing/.venv/bin/python",
        job_script_prologue=("module load gcc", "source /shared/lensing/env.sh"),
        job_extra_directives=("--qos=short", "--comment=lensing tiles"),
        local_directory="/scratch/dask",
        log_directory="/shared/logs",
        interface="ib0",
    )


@pytest.mark.parametrize(
    ("env", "variable", "value"),
    [
        ({"LENSING_DASK_CLUSTER": "kubernetes"}, "LENSING_DASK_CLUSTER", "kubernetes"),
        ({"LENSING_DASK_WORKERS": "two"}, "LENSING_DASK_WORKERS", "two"),
        ({"LENSING_DASK_WORKERS": "0"}, "LENSING_DASK_WORKERS", "0"),
        ({"LENSING_DASK_THREADS": "1.5"}, "LENSING_DASK_THREADS", "1.5"),
        ({"LENSING_DASK_MEMORY": "lots"}, "LENSING_DASK_MEMORY", "lots"),
        ({"LENSING_DASK_TIMEOUT": "-3"}, "LENSING_DASK_TIMEOUT", "-3"),
        ({"LENSING_DASK_CLUSTER": "address"}, "LENSING_DASK_ADDRESS", "address"),
        ({"LENSING_DASK_CLUSTER": "slurm", "LENSING_SLURM_CORES": "x"}, "LENSING_SLURM_CORES", "x"),
        (
            {"LENSING_DASK_CLUSTER": "slurm", "LENSING_SLURM_MEMORY": "8 gigs"},
            "LENSING_SLURM_MEMORY",
            "8 gigs",
        ),
        (
            {"LENSING_DASK_CLUSTER": "slurm", "LENSING_SLURM_WALLTIME": "1h"},
            "LENSING_SLURM_WALLTIME",
            "1h",
        ),
        ({"LENSING_SLURM_JOBS": "0"}, "LENSING_SLURM_JOBS", "0"),
        ({"LENSING_SLURM_WAIT": "soon"}, "LENSING_SLURM_WAIT", "soon"),
        (
            {"LENSING_DASK_CLUSTER": "slurm", "LENSING_SLURM_CORES": "3"},
            "LENSING_SLURM_PROCESSES",
            "3",
        ),
        (
            {"LENSING_DASK_CLUSTER": "slurm", "LENSING_SLURM_DIRECTIVES": "qos=short"},
            "LENSING_SLURM_DIRECTIVES",
            "qos=short",
        ),
        ({"LENSING_SLURM_DIRECTIVES": "--comment='open"}, "LENSING_SLURM_DIRECTIVES", "'open"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], variable: str, value: str) -> None:
    if variable == "LENSING_SLURM_PROCESSES":
        env = {**env, "LENSING_SLURM_PROCESSES": "2"}  # 3 cores do not split in 2 processes
    with pytest.raises(ValueError, match=variable) as error:
        ClusterSettings.from_env(env)
    assert value in str(error.value)


# --- a local cluster -------------------------------------------------------------------------


def _where() -> int:
    return os.getpid()


def test_local_cluster_runs_on_both_workers_and_shows_its_dashboard(tmp_path: Path) -> None:
    """Two worker processes, each running a task; describe() gives a dashboard that answers."""
    settings = ClusterSettings(kind="local", n_workers=2, local_directory=str(tmp_path))
    with open_client(settings) as client:
        pids = client.run(os.getpid)  # {worker address: pid}
        assert len(set(pids.values())) == 2
        assert os.getpid() not in pids.values()  # processes, not threads of this one
        assert set(client.nthreads().values()) == {1}
        ran_on = {a: client.submit(_where, workers=[a], pure=False).result() for a in pids}
        assert ran_on == pids
        text = describe(client)
        match = re.fullmatch(
            r"local cluster, 2 workers, dashboard (http://127\.0\.0\.1:\d+/)status", text
        )
        assert match, text
        with urllib.request.urlopen(match.group(1) + "health", timeout=10) as response:
            assert response.read() == b"ok"
        cluster = client.cluster
    assert cluster is not None
    assert cluster.status.name == "closed"  # leaving the block closed the cluster too


def _slow_square(x: int, marks: str) -> tuple[int, int]:
    """``x * x`` after half a second, and the pid it ran in; leaves a mark when it starts."""
    Path(marks, f"{x}-{os.getpid()}").touch()
    time.sleep(0.5)
    return x * x, os.getpid()


@pytest.mark.slow
def test_a_worker_killed_mid_computation_loses_no_result(tmp_path: Path) -> None:
    """SIGKILL one of two workers while it runs a task: every result still comes back."""
    settings = ClusterSettings(kind="local", n_workers=2, local_directory=str(tmp_path / "dask"))
    with open_client(settings) as client:
        victim = next(iter(client.run(os.getpid).values()))
        futures = client.map(_slow_square, range(12), marks=str(tmp_path), pure=False)
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(f"*-{victim}")):  # a task has started on the victim
            assert time.monotonic() < deadline, "no task started on the victim worker"
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        results = client.gather(futures)
    assert [square for square, _ in results] == [x * x for x in range(12)]
    # the victim's results died with it: each one was recomputed on a live worker
    assert victim not in {pid for _, pid in results}


# --- a scheduler at an address ---------------------------------------------------------------


def test_an_unreachable_scheduler_is_named_in_the_error() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with (
        pytest.raises(
            ClusterUnreachableError, match=rf"{re.escape(address)} \(LENSING_DASK_ADDRESS\)"
        ),
        open_client(ClusterSettings(kind="address", address=address, connect_timeout_s=2)),
    ):
        pytest.fail("connected to a scheduler that does not exist")
    assert time.monotonic() - start < 10


def test_an_existing_scheduler_is_used_and_left_running() -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1, processes=False, dashboard_address="127.0.0.1:0", silence_logs=40
    ) as cluster:
        settings = ClusterSettings(kind="address", address=cluster.scheduler_address)
        with open_client(settings) as client:
            assert client.submit(operator.add, 1, 2).result() == 3
            assert describe(client).startswith(f"scheduler {cluster.scheduler_address}, 1 worker")
        assert cluster.scheduler.status.name == "running"
        with Client(cluster.scheduler_address, timeout=10) as again:
            assert again.submit(operator.mul, 6, 7).result() == 42


# --- SLURM -----------------------------------------------------------------------------------


def test_slurm_job_script_carries_every_setting(tmp_path: Path) -> None:
    settings = ClusterSettings(
        kind="slurm",
        queue="short",
        account="des",
        cores=4,
        processes=2,
        memory="8GB",
        walltime="02:30:00",
        python="/shared/lensing/.venv/bin/python",
        job_script_prologue=("source /shared/lensing/env.sh",),
        job_extra_directives=("--qos=debug",),
        local_directory="/scratch/dask",
        log_directory=str(tmp_path / "logs"),
        interface="lo",
    )
    script = slurm_job_script(settings)
    lines = script.splitlines()
    logs = tmp_path / "logs"
    for line in (
        f"#SBATCH -J {SLURM_JOB_NAME}",
        f"#SBATCH --output={logs}/{SLURM_JOB_NAME}-%j.out",
        f"#SBATCH --error={logs}/{SLURM_JOB_NAME}-%j.err",
        "#SBATCH -p short",
        "#SBATCH -A des",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",  # 8 GB rounded up to whole GiB
        "#SBATCH -t 02:30:00",
        "#SBATCH --qos=debug",
        "source /shared/lensing/env.sh",
    ):
        assert line in lines, f"{line!r} not in\n{script}"
    worker = lines[-1]
    assert worker.startswith(
        "/shared/lensing/.venv/bin/python -m distributed.cli.dask_worker "
        f"{SCRIPT_SCHEDULER_PLACEHOLDER} "
    ), script
    for option in ("--nthreads 2", "--nworkers 2", "--memory-limit 3.73GiB", "--nanny"):
        assert option in worker, worker
    assert "--local-directory /scratch/dask" in worker
    assert "--interface lo" in worker
    assert lines.index("source /shared/lensing/env.sh") < len(lines) - 1  # before the worker
    assert not logs.exists()  # a script only: nothing made


@pytest.mark.slow
def test_slurm_cluster_runs_work_in_a_slurm_job(
    slurm_cluster: SlurmTestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker starts through sbatch, runs a task inside its job, and leaves with the client."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    settings = ClusterSettings(
        kind="slurm",
        queue=slurm_cluster.partition,
        cores=1,
        memory="1GB",
        walltime="00:10:00",
        log_directory=str(tmp_path / "logs"),  # made by open_client: SLURM needs it
        local_directory=str(tmp_path / "dask"),
        worker_timeout_s=90,
    )
    with open_client(settings) as client:
        job_ids = set(client.run(os.getenv, "SLURM_JOB_ID").values())
        assert len(job_ids) == 1
        assert None not in job_ids, "the worker does not run in a SLURM job"
        assert client.submit(os.getenv, "SLURM_JOB_PARTITION", pure=False).result() == "lensing"
        assert client.submit(os.getenv, "SLURM_JOB_ID", pure=False).result() in job_ids
        assert slurm_cluster.queue() == sorted(job_ids)
        (job_id,) = job_ids
        job = slurm_cluster.run("scontrol", "show", "job", job_id).stdout
        for granted in (
            "TimeLimit=00:10:00",
            "MinMemoryNode=954M",
            "NumCPUs=1",
            "JobState=RUNNING",
        ):
            assert granted in job.split(), job  # 1 GB asked as whole MiB
        assert describe(client).startswith("SLURM cluster (scheduler tcp://")
    deadline = time.monotonic() + 30
    while slurm_cluster.queue():
        assert time.monotonic() < deadline, f"jobs still queued: {slurm_cluster.queue()}"
        time.sleep(0.2)
    assert (tmp_path / "logs" / f"{SLURM_JOB_NAME}-{job_id}.err").exists()  # where it says


@pytest.mark.slow
def test_slurm_without_a_worker_says_where_the_job_logs_are(
    slurm_cluster: SlurmTestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose worker cannot start: the error names the partition, the job and its logs."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    settings = ClusterSettings(
        kind="slurm",
        queue=slurm_cluster.partition,
        memory="1GB",
        python=str(tmp_path / "no-such-python"),
        log_directory=str(tmp_path / "logs"),
        worker_timeout_s=5,
    )
    with pytest.raises(WorkersMissingError) as error, open_client(settings):
        pytest.fail("a worker joined")
    message = str(error.value)
    assert f"submitted to {slurm_cluster.partition}" in message
    assert f"{tmp_path / 'logs'}/{SLURM_JOB_NAME}-JOBID.out" in message
    assert re.search(r"job ids \['\d+'\]", message), message
    assert "no-such-python: No such file or directory" in message  # the end of the job's log
    deadline = time.monotonic() + 30
    while slurm_cluster.queue():  # the failed open cancelled its job
        assert time.monotonic() < deadline, f"jobs still queued: {slurm_cluster.queue()}"
        time.sleep(0.2)


@pytest.mark.slow
def test_slurm_refusing_the_job_says_why_at_once(
    slurm_cluster: SlurmTestCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More memory than the node has: SLURM's reason, without waiting for a worker."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    settings = ClusterSettings(
        kind="slurm", queue=slurm_cluster.partition, memory="100TB", worker_timeout_s=20
    )
    start = time.monotonic()
    with (
        pytest.raises(JobRejectedError, match="Requested node configuration is not available"),
        open_client(settings),
    ):
        pytest.fail("a worker joined")
    assert time.monotonic() - start < 10
    assert slurm_cluster.queue() == []
