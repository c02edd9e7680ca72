"""The instance on PostgreSQL (``dagster.postgres.yaml``), against a real server.

``LENSING_INSTANCE=postgres . ./env.sh`` links ``dagster.postgres.yaml`` as the instance's
``dagster.yaml``; the connection comes from the ``DAGSTER_PG_*`` variables. Each test that
writes to the instance gets a database of its own on the session's server
(:mod:`tests.fixtures.postgres`) and reads back what the CLI, the daemon and the runs stored
there. A server that cannot be reached, or a wrong password, stops a command with one
paragraph (``lensing_assets/instance.py``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresRunStorage

from tests.fixtures.daemon import daemon
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.queue_jobs import HOLD_OP, HOLD_SLOT_OP
from tests.fixtures.run_queue import (
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
from tests.fixtures.servers import free_port, stop_process_group, tail
from tests.fixtures.shell import REPO, shell, user_environment

SQLITE_YAML = REPO / "dagster.yaml"
POSTGRES_YAML = REPO / "dagster.postgres.yaml"
KAPPA_101 = "dagster asset materialize --select kappa_maps --partition 101"
SETTINGS = {"LENSING_INSTANCE": "postgres", "LENSING_SUITE": "101-102", "LENSING_NSIDE": "128"}

MAX_CONCURRENT_RUNS = 2  # concurrency.runs.max_concurrent_runs of both YAML files
SETTLE_S = 12.0  # two passes of the daemon's run queue (every 5 s)
RUN_TIMEOUT_S = 120.0
TICK_TIMEOUT_S = 150.0  # the schedules tick at the next full minute after the daemon starts
EXPECTED_TICKS = {"lensing_automation", "sim_discovery_sensor", "fill_missing_kappa_maps"}


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _explain(result: subprocess.CompletedProcess[str], database: PostgresServer) -> str:
    """The end of a command's output and of the server's log, for a failure message."""
    return f"{_output(result)[-3000:]}\nPostgreSQL log:\n{tail(database.log, 1500)}"


@pytest.fixture
def database(postgres_server: PostgresServer) -> PostgresServer:
    """A new, empty database on the session's server: an instance of this test's own."""
    return postgres_server.new_database()


@pytest.fixture
def pg_env(tmp_path: Path, database: PostgresServer) -> dict[str, str]:
    """A user's environment (:func:`user_environment`) on *database*: sims 101-102, nside 128."""
    return user_environment(tmp_path, **SETTINGS, **database.env())


@contextmanager
def postgres_instance(
    home: Path, database: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The instance of *home* (its dagster.yaml) opened here, on *database*."""
    for name, value in database.env().items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage), instance.run_storage
        yield instance
    finally:
        instance.dispose()


def _sql(database: PostgresServer, query: str) -> list[tuple]:
    """The rows of *query* on *database*, read straight from the server."""
    connection: Any = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    finally:
        connection.close()


def test_the_two_instance_files_differ_only_in_storage() -> None:
    """Run queue, concurrency limits, pools and telemetry: the same in both YAML files."""
    sqlite, postgres = _yaml(SQLITE_YAML), _yaml(POSTGRES_YAML)
    assert set(sqlite) == set(postgres)
    assert {k: v for k, v in postgres.items() if k != "storage"} == {
        k: v for k, v in sqlite.items() if k != "storage"
    }


def test_postgres_credentials_come_only_from_the_environment() -> None:
    storage = _yaml(POSTGRES_YAML)["storage"]["custom"]
    assert (storage["module"], storage["class"]) == (
        "lensing_assets.instance",
        "CheckedPostgresStorage",
    )
    assert storage["config"] == {
        "postgres_db": {
            "hostname": {"env": "DAGSTER_PG_HOST"},
            "port": {"env": "DAGSTER_PG_PORT"},
            "username": {"env": "DAGSTER_PG_USERNAME"},
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "db_name": {"env": "DAGSTER_PG_DB"},
            "scheme": "postgresql+psycopg2",  # the driver dagster-postgres installs
        }
    }


@pytest.mark.parametrize(
    ("choice", "linked"),
    [(None, SQLITE_YAML), ("sqlite", SQLITE_YAML), ("postgres", POSTGRES_YAML)],
)
def test_env_sh_links_the_chosen_instance(tmp_path: Path, choice: str | None, linked: Path) -> None:
    env = user_environment(tmp_path, **({"LENSING_INSTANCE": choice} if choice else {}))
    result = shell('readlink "$DAGSTER_HOME/dagster.yaml"', env)
    assert result.returncode == 0, _output(result)
    assert result.stdout.strip() == str(linked)
    if choice == "postgres":  # no DAGSTER_PG_* set here: env.sh says which are missing
        assert "DAGSTER_PG_PASSWORD is not set" in result.stderr


def test_env_sh_refuses_an_unknown_instance(tmp_path: Path) -> None:
    result = shell("echo sourced", user_environment(tmp_path, LENSING_INSTANCE="mysql"))
    assert result.returncode != 0
    assert "sourced" not in result.stdout
    assert "LENSING_INSTANCE=mysql" in result.stderr
    assert "sqlite (the default) or postgres" in result.stderr


@pytest.mark.slow
def test_definitions_load_and_register_the_suite_in_postgres(
    pg_env: dict[str, str], database: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dagster definitions validate` on the Postgres instance; the sims land in its database."""
    result = shell("dagster definitions validate -m lensing_assets", pg_env)
    assert result.returncode == 0, _explain(result, database)
    assert "could not register" not in _output(result)
    home = Path(pg_env["DAGSTER_HOME"])
    assert (home / "dagster.yaml").resolve() == POSTGRES_YAML
    with postgres_instance(home, database, monkeypatch) as instance:
        assert sorted(instance.get_dynamic_partitions("sims")) == ["101", "102"]
    assert not (home / "history").exists()  # no SQLite storage beside it
    assert not (home / "schedules").exists()


@pytest.mark.slow
def test_a_partition_materializes_into_postgres(
    pg_env: dict[str, str], database: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kappa_maps[101] through the CLI; its run and materialization are in the database."""
    result = shell(KAPPA_101, pg_env)
    assert result.returncode == 0, _explain(result, database)
    with postgres_instance(Path(pg_env["DAGSTER_HOME"]), database, monkeypatch) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("kappa_maps"))
        assert event is not None
        assert event.dagster_event is not None
        assert event.dagster_event.partition == "101"
        run = instance.get_run_by_id(event.run_id)
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_materialized_partitions(dg.AssetKey("kappa_maps")) == {"101"}
    rows = _sql(
        database,
        "SELECT partition, run_id FROM event_logs WHERE dagster_event_type = "
        "'ASSET_MATERIALIZATION' AND asset_key = '[\"kappa_maps\"]'",
    )
    assert rows == [("101", event.run_id)]


def _run_to_end(
    command: str, env: dict[str, str], timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """*command* after env.sh, as :func:`shell` runs it, in a process group of its own: a
    server that does not stop by itself (`dagster dev`, the daemon) is stopped, and fails."""
    process = subprocess.Popen(
        ["bash", "-c", f". ./env.sh && {command}"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command} still ran after {timeout_s:.0f} s:\n{(stdout + stderr)[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "command"),
    [
        ("unreachable", "dagster instance info"),
        ("unreachable", "dagster dev -h 127.0.0.1 -p {port}"),
        ("wrong password", KAPPA_101),
        ("wrong password", "dagster-daemon run"),
    ],
)
def test_an_unusable_server_stops_a_command_with_one_paragraph(
    pg_env: dict[str, str], database: PostgresServer, fault: str, command: str
) -> None:
    """Nothing listens on the port, or the password is wrong: one paragraph, no traceback."""
    if fault == "unreachable":
        env = pg_env | {"DAGSTER_PG_PORT": str(free_port())}
        reason = "Connection refused"
        hint = "Is the server running, and are DAGSTER_PG_HOST and DAGSTER_PG_PORT right?"
    else:
        env = pg_env | {"DAGSTER_PG_PASSWORD": "not-the-password"}
        reason = f'password authentication failed for user "{database.user}"'
        hint = "Check DAGSTER_PG_USERNAME and DAGSTER_PG_PASSWORD."
    port = env["DAGSTER_PG_PORT"]
    result = _run_to_end(command.format(port=free_port()), env)
    output = _output(result)
    assert result.returncode == 1, _explain(result, database)
    where = f"(host {database.host}, port {port}, database {database.db}, user {database.user})"
    paragraph = (
        f"Error: cannot open the Dagster instance's Postgres storage: {reason} {where}. {hint}"
    )
    assert paragraph in result.stderr, _explain(result, database)
    assert "Traceback" not in output
    assert "Retrying failed database connection" not in output  # failed at once


def _ticks(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """{sensor or schedule: statuses of its finished ticks} (SKIPPED, SUCCESS, FAILURE)."""
    return {
        state.instigator_name: [
            tick.status.value
            for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)
            if tick.status.value != "STARTED"
        ]
        for state in instance.all_instigator_state()
    }


@pytest.mark.slow
def test_sensors_and_schedules_tick_into_postgres(
    tmp_path: Path,
    pg_env: dict[str, str],
    database: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon on the Postgres instance: the automation sensor, the discovery sensor and
    the fill-missing schedules (every minute here) record their ticks in the database. The
    source is empty, so that nothing is requested and no run starts."""
    maps = tmp_path / "maps"
    maps.mkdir()
    env = pg_env | {
        "LENSING_SOURCE": "kappa_npz",
        "LENSING_KAPPA_DIR": str(maps),
        "LENSING_SUITE": "full",  # every sim of the folder: none
        "LENSING_BACKFILL_CRON": "* * * * *",
        "LENSING_AUTOMATION": "on",
    }
    home, log = Path(env["DAGSTER_HOME"]), tmp_path / "daemon.log"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(POSTGRES_YAML)  # as env.sh links it
    # the instance's tables are made here, before the daemon's processes start
    with postgres_instance(home, database, monkeypatch) as instance, daemon(env, log) as running:
        deadline = time.monotonic() + TICK_TIMEOUT_S
        while EXPECTED_TICKS - {name for name, ticks in _ticks(instance).items() if ticks}:
            if running.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"ticks of {sorted(EXPECTED_TICKS)} not recorded within "
                    f"{TICK_TIMEOUT_S:.0f} s: {_ticks(instance)}\n{tail(log)}\n"
                    f"PostgreSQL log:\n{tail(database.log, 1500)}"
                )
            time.sleep(1.0)
        ticks = _ticks(instance)
    for name in EXPECTED_TICKS:  # nothing to do, and no error evaluating it
        assert set(ticks[name]) == {"SKIPPED"}, (name, ticks[name], tail(log))
    by_type = dict(_sql(database, "SELECT type, count(*) FROM job_ticks GROUP BY type"))
    assert by_type["SENSOR"] >= 2
    assert by_type["SCHEDULE"] >= 1
    assert _sql(database, "SELECT count(*) FROM runs") == [(0,)]


HOLD = Submission("hold_gpu_job", location=STAND_INS)  # GPU tag and pool, held by the test
TAG_ONLY = Submission("gpu_tag_only_job", location=STAND_INS)  # only the tag limit holds it
SLOT = Submission("hold_run_job", location=STAND_INS)  # untagged, no pool, held by the test


@pytest.fixture
def dagster_dev_on_postgres(tmp_path: Path, database: PostgresServer) -> Iterator[DevServer]:
    """``dagster dev`` with the stand-ins' code location on the Postgres instance."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "LENSING_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        OMP_WAIT_POLICY="PASSIVE",
        LENSING_DATA_ROOT=str(tmp_path / "data"),
        **database.env(),
    )
    with dagster_dev_server(tmp_path, POSTGRES_YAML, env, [STAND_INS]) as server:
        yield server


@pytest.mark.slow
def test_the_daemon_runs_the_queue_on_postgres(
    dagster_dev_on_postgres: DevServer, database: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a GPU run holds the GPU: a tagged run waits though a slot is free, an untagged
    run takes that slot, and the next untagged run waits for a slot; once released, every run
    ends, never more than two at once nor two GPU-tagged ones."""
    server = dagster_dev_on_postgres
    repos = wait_for_locations(server, n_locations=1)
    release = {"config": {"release_file": str(server.release)}}
    with postgres_instance(server.home, database, monkeypatch) as instance:
        hold = launch(server, repos, HOLD, {"ops": {HOLD_OP: release}})
        poll(
            server,
            "the GPU stand-in's step started",
            RUN_TIMEOUT_S,
            lambda: has_event(instance, hold, dg.DagsterEventType.STEP_START),
        )
        tag_only = launch(server, repos, TAG_ONLY)
        first = launch(server, repos, SLOT, {"ops": {HOLD_SLOT_OP: release}})
        second = launch(server, repos, SLOT, {"ops": {HOLD_SLOT_OP: release}})
        names = {hold: "hold_gpu", tag_only: "gpu_tag_only", first: "slot 1", second: "slot 2"}
        submissions = dict(zip(names, [HOLD, TAG_ONLY, SLOT, SLOT], strict=True))
        poll(
            server,
            "the first untagged run's step started",
            RUN_TIMEOUT_S,
            lambda: has_event(instance, first, dg.DagsterEventType.STEP_START),
        )
        time.sleep(SETTLE_S)  # the queue had its chances to launch what it must hold
        held = {
            names[r.dagster_run.run_id]: r.dagster_run.status for r in records(instance, [*names])
        }
        assert held == {
            "hold_gpu": dg.DagsterRunStatus.STARTED,
            "slot 1": dg.DagsterRunStatus.STARTED,
            "gpu_tag_only": dg.DagsterRunStatus.QUEUED,  # the GPU tag limit (1)
            "slot 2": dg.DagsterRunStatus.QUEUED,  # max_concurrent_runs (2)
        }, tail(server.log)
        server.release.touch()
        poll(
            server,
            "every run finished",
            RUN_TIMEOUT_S,
            lambda: all(r.dagster_run.is_finished for r in records(instance, [*names])),
        )
        runs = {names[i]: run_times(instance, i, s) for i, s in submissions.items()}
    times = timeline(list(runs.values()))
    assert {r.status for r in runs.values()} == {dg.DagsterRunStatus.SUCCESS}, times
    most_running = max_overlap([(r.launched, r.ended) for r in runs.values()])
    assert most_running == MAX_CONCURRENT_RUNS, f"{most_running} runs at once\n{times}"
    gpu = [runs["hold_gpu"], runs["gpu_tag_only"]]
    assert all(r.gpu_tagged for r in gpu), times
    assert max_overlap([(r.launched, r.ended) for r in gpu]) == 1, times
    assert _sql(database, "SELECT count(*) FROM runs") == [(4,)]
