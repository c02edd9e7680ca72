"""The simulations' inputs: an observable source per sim, and the discovery sensor.

``sim_inputs`` is the upstream of ``kappa_maps``: its data version per sim is
:func:`lensing_core.sims.inputs.input_version` (content hash of the input files, or the
synthetic recipe, with the sim's parameters). ``sim_discovery_sensor`` runs by default and,
at each tick:

- registers the sims the source holds that are not partitions yet;
- requests the ``kappa_maps`` of every sim the source holds that has none, once (the sims
  requested are in the cursor, and the run key is the sim);
- records a new observation of ``sim_inputs[s]`` when the version of sim s differs from the
  one its products were made from (the version recorded in its kappa file) or last observed,
  which is what makes the automation rebuild exactly that sim's kappa maps and tiles.
"""

import json
import logging
import warnings

import dagster as dg

from lensing_assets.defs.partitions import SIMS_PARTITIONS, sim_partitions_def
from lensing_core.sims.inputs import input_version
from lensing_core.sims.sources import KappaSource
from lensing_core.storage import DataRoot

SIM_INPUTS_KEY = dg.AssetKey("sim_inputs")
KAPPA_KEY = dg.AssetKey("kappa_maps")


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # observable sources are beta in 1.13

    @dg.observable_source_asset(
        partitions_def=sim_partitions_def,
        group_name="sims",
        description=(
            "The inputs of each simulation (source files or synthetic recipe, and parameters). "
            "Data version per sim: a content hash. Observed by sim_discovery_sensor."
        ),
    )
    def sim_inputs(
        context: dg.AssetExecutionContext,
        storage: dg.ResourceParam[DataRoot],
        kappa_source: dg.ResourceParam[KappaSource],
    ) -> dg.DataVersionsByPartition:
        """Observe the input version of every registered sim (the UI's "Observe" button)."""
        sims = [int(key) for key in context.instance.get_dynamic_partitions(SIMS_PARTITIONS)]
        versions = input_versions(kappa_source, storage, sims, context.log)
        return dg.DataVersionsByPartition({str(s): v for s, v in versions.items()})


def input_versions(
    source: KappaSource, root: DataRoot, sim_ids: list[int], log: logging.Logger
) -> dict[int, str]:
    """Input version of each of *sim_ids*, with the content hashes cached under *root*.

    A sim whose inputs cannot be read is logged and left out.
    """
    cache = root.input_hash_cache()
    versions = {}
    for sim_id in sim_ids:
        try:
            versions[sim_id] = input_version(source, sim_id, cache=cache)
        except (KeyError, FileNotFoundError) as err:
            log.warning(f"sim {sim_id}: inputs not observable: {err}")
    cache.save()
    return versions


def recorded_input_version(root: DataRoot, sim_id: int) -> str | None:
    """The input version the kappa file of *sim_id* was made from (None if no file or none)."""
    if not root.kappa_path(sim_id).is_file():
        return None
    try:
        return root.read_kappa_metadata(sim_id).get("input_version")
    except (OSError, ValueError):
        return None


def discovery_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """``sim_discovery_sensor``, starting in *default_status*; see the module docstring."""

    @dg.sensor(
        name="sim_discovery_sensor",
        minimum_interval_seconds=120,
        default_status=default_status,
        asset_selection=dg.AssetSelection.assets(KAPPA_KEY),
        description=(
            "Registers new simulations as partitions and requests their kappa maps once; "
            "observes sim_inputs when a sim's inputs changed."
        ),
    )
    def sim_discovery_sensor(
        context: dg.SensorEvaluationContext,
        storage: dg.ResourceParam[DataRoot],
        kappa_source: dg.ResourceParam[KappaSource],
    ) -> dg.SensorResult:
        """One tick: discover, register, request, version."""
        state = json.loads(context.cursor) if context.cursor else {}
        versions: dict[str, str] = state.get("versions", {})
        requested: set[str] = set(state.get("requested", []))
        found = kappa_source.discover()
        known = set(context.instance.get_dynamic_partitions(SIMS_PARTITIONS))
        new = [str(s) for s in found if str(s) not in known]
        events = []
        for sim_id, version in input_versions(kappa_source, storage, found, context.log).items():
            key = str(sim_id)
            before = versions.get(key) or recorded_input_version(storage, sim_id)
            if version != before:
                events.append(
                    dg.AssetObservation(
                        asset_key=SIM_INPUTS_KEY,
                        partition=key,
                        tags={"dagster/data_version": version},
                        metadata={"previous_version": before or "none"},
                    )
                )
            versions[key] = version
        done = context.instance.get_materialized_partitions(KAPPA_KEY)
        to_request = [str(s) for s in found if str(s) not in done and str(s) not in requested]
        requested.update(to_request)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"sim-{key}", partition_key=key, asset_selection=[KAPPA_KEY])
                for key in to_request
            ],
            dynamic_partitions_requests=[sim_partitions_def.build_add_request(new)] if new else [],
            asset_events=events,
            cursor=json.dumps({"versions": versions, "requested": sorted(requested, key=int)}),
        )

    return sim_discovery_sensor
