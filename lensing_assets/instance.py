"""Postgres instance storage that says in one paragraph why it cannot connect.

``dagster.postgres.yaml`` configures :class:`CheckedPostgresStorage` as the instance's custom
storage. It is dagster-postgres' storage, but before that storage connects (which retries for
about 13 s, then prints three chained tracebacks ending in "too many retries for DB
connection"), it tries one connection with a short timeout. If that fails, every command that
opens the instance (the CLI, ``dagster dev``, the daemon, a run) stops with one paragraph that
names the host, port, database and user, what failed (connection refused, password
authentication failed, ...) and which ``DAGSTER_PG_*`` variable to check.

Dagster imports this module whenever it opens the instance (the webserver and the daemon
too), so it imports nothing beyond what dagster-postgres imports. Importing it runs
``lensing_assets/__init__.py`` first, which imports the definitions' modules (not called).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import sqlalchemy
import sqlalchemy.exc
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

CONNECT_TIMEOUT_S = 5  # a server that does not answer (a firewall) fails after this long

# What libpq says when a connection fails, and what to check then.
_UNREACHABLE = "Is the server running, and are DAGSTER_PG_HOST and DAGSTER_PG_PORT right?"
_HINTS = (
    ("password authentication failed", "Check DAGSTER_PG_USERNAME and DAGSTER_PG_PASSWORD."),
    ("no pg_hba.conf entry", "Check DAGSTER_PG_USERNAME, or the server's pg_hba.conf."),
    ("does not exist", "Check DAGSTER_PG_DB and DAGSTER_PG_USERNAME, or create the database."),
    ("connection refused", _UNREACHABLE),
    ("timeout expired", _UNREACHABLE),
    ("could not translate host name", "Check DAGSTER_PG_HOST."),
)


class PostgresStorageUnavailable(click.ClickException):
    """The instance's Postgres storage cannot be reached; the CLI prints ``Error: <message>``."""


def _driver_message(err: sqlalchemy.exc.DBAPIError) -> str:
    """The reason libpq gives, without "connection to server at ... failed:" and "FATAL:"."""
    text = str(err.orig) if err.orig is not None else str(err)
    first = next((line for line in text.splitlines() if line.strip()), text)
    reason = first.split(" failed: ", 1)[-1]
    return reason.removeprefix("FATAL:").strip()


def unavailable_message(url: sqlalchemy.engine.URL, reason: str) -> str:
    """The paragraph for a connection to *url* that failed for *reason* (libpq's words)."""
    hint = next((hint + " " for key, hint in _HINTS if key in reason.lower()), "")
    return (
        f"cannot open the Dagster instance's Postgres storage: {reason} (host {url.host}, "
        f"port {url.port or 5432}, database {url.database}, user {url.username}). {hint}"
        "The instance is the dagster.yaml of DAGSTER_HOME (dagster.postgres.yaml with "
        "LENSING_INSTANCE=postgres); it reads the connection from the DAGSTER_PG_* variables."
    )


def probe(postgres_url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Open and close one connection to *postgres_url*; raise PostgresStorageUnavailable."""
    url = sqlalchemy.engine.make_url(postgres_url)
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args={"connect_timeout": int(timeout_s)}
    )
    try:
        engine.connect().close()
    except sqlalchemy.exc.DBAPIError as err:
        raise PostgresStorageUnavailable(unavailable_message(url, _driver_message(err))) from None
    finally:
        engine.dispose()


class CheckedPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres' storage (same configuration), checking the connection first."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> CheckedPostgresStorage:
        """Probe the server, then build the storage as dagster-postgres does."""
        postgres_url = pg_url_from_config(config_value)
        token_provider = get_token_provider_from_config(config_value)
        if token_provider is None:  # a token is injected per connection: no simple probe
            probe(postgres_url)
        return cls(
            inst_data=inst_data,
            postgres_url=postgres_url,
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=token_provider,
        )
