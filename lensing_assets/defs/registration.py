"""The configured suite's sims as partitions of the instance, from the moment the code loads.

Sim partitions are dynamic: they live in the instance, so that sims that appear in the source
become partitions while the daemon runs (the discovery sensor adds them). So that a fresh
instance (a new user, a new machine, CI) knows the suite too, the definitions register the
sims the source holds when they load into a process that has an instance (``DAGSTER_HOME``):
the CLI, ``dagster dev``'s code server, a run. Dagster's CLI checks ``--partition`` against
the instance before any asset runs; for a sim the source does not hold, the check here fails
first with one line that names the sim, the source and what adds it.
"""

from __future__ import annotations

import logging
import os

import click
import dagster as dg

from lensing_assets.defs.partitions import SIMS_PARTITIONS, register_sims
from lensing_core.sims.sources import KappaSource

logger = logging.getLogger(__name__)

SIM_ASSETS = ("sim_inputs", "kappa_maps", "tiles")


def unknown_sim_message(source: KappaSource, sim_id: str) -> str:
    """One line: the sim is not in the source, what adds it, and the command that registers it."""
    what = source.how_to_add(int(sim_id)) if sim_id.isdigit() else "use a sim id, e.g. 109"
    return (
        f"sim {sim_id} is not a sim of the {source.name} source ({source.suite_text()}): "
        f"{what}, then run: python -m lensing_assets.register {sim_id}"
    )


def register_suite(source: KappaSource, definitions: dg.Definitions) -> None:
    """
    Register the sims *source* holds in the instance of ``DAGSTER_HOME``, if one is set.

    Under ``dagster asset materialize --partition``, also refuse a sim the source does not
    hold with :func:`unknown_sim_message` (printed as one line by the CLI).
    """
    if not os.environ.get("DAGSTER_HOME"):
        return  # no instance to register in (an ephemeral one, a test)
    try:
        with dg.DagsterInstance.get() as instance:
            added = register_sims(instance, source.discover())
            unknown = _unregistered_cli_sim(definitions, instance)
    except Exception as err:  # the definitions must load even if the instance cannot be reached
        logger.warning("could not register the %s source's sims: %s", source.name, err)
        return
    if added:
        logger.info("registered %d sims of the %s source as partitions", len(added), source.name)
    if unknown is not None:
        raise click.ClickException(unknown_sim_message(source, unknown))


def _unregistered_cli_sim(definitions: dg.Definitions, instance: dg.DagsterInstance) -> str | None:
    """The sim of ``dagster asset materialize --partition`` if it is no partition, else None.

    Called after the source's sims are registered: a sim still not registered is one the source
    does not hold (nor the sensor or the register command added).
    """
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command.name != "materialize":
        return None
    partition, select = ctx.params.get("partition"), ctx.params.get("select")
    if not partition or not select:
        return None
    selected = {key.to_user_string() for key in _selected_keys(definitions, select)}
    if not selected & set(SIM_ASSETS):
        return None
    sim_id = partition.split("|")[0]
    return None if instance.has_dynamic_partition(SIMS_PARTITIONS, sim_id) else sim_id


def _selected_keys(definitions: dg.Definitions, select: str) -> set[dg.AssetKey]:
    try:
        return set(
            dg.AssetSelection.from_coercible(select.split(",")).resolve(
                definitions.resolve_asset_graph(), allow_missing=True
            )
        )
    except Exception:  # a bad selection: Dagster's CLI reports it itself
        return set()
