"""The simulations' inputs: an observable source per sim, and the discovery sensor.

``sim_inputs`` is the upstream of ``kappa_maps``: its data version per sim is
:func:`lensing_core.sims.inputs.input_version` (content hash of the input files, or the
synthetic recipe, with the sim's parameters). ``sim_discovery_sensor`` runs by default and,
at each tick:

- registers the sims the source holds that are not partitions yet and requests their
  ``kappa_maps`` (once: the sim ids seen are in the cursor, and the run key is the sim);
- records a new observation of ``sim_inputs[s]`` when the version of sim s differs from the
  one its products were made from (the version recorded in its kappa file) or last observed,
  which is what makes the automation rebuild exactly that sim's kappa maps and tiles.
"""

import json
import logging
import warnings

import dagster as dg

from lensing_assets.defs.conditions import SENSOR_STATUS
from lensing_assets.defs.partitions import SIMS_PARTITIONS, sim_partitions_def
from lensing_assets.defs.resources import KappaSourceResource, LensingStorage
from lensing_core.io import read_npz
from lensing_core.sims.inputs import discover_sim_ids, input_version
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

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
        storage: LensingStorage,
        kappa_source: KappaSourceResource,
    ) -> dg.DataVersionsByPartition:
        """Observe the input version of every registered sim (the UI's "Observe" button)."""
        source = kappa_source.build()
        cache = storage.data_root().input_hash_cache()
        versions = {}
        for key in context.instance.get_dynamic_partitions(SIMS_PARTITIONS):
            try:
                versions[key] = input_version(source, int(key), cache=cache)
            except (KeyError, FileNotFoundError) as err:
                context.log.warning(f"sim {key}: inputs not observable: {err}")
        cache.save()
        return dg.DataVersionsByPartition(versions)


def recorded_input_version(root: DataRoot, sim_id: int) -> str | None:
    """The input version the kappa file of *sim_id* was made from (None if no file or none)."""
    path = root.kappa_path(sim_id)
    if not path.is_file():
        return None
    try:
        _, metadata = read_npz(path, (), what=f"kappa maps of sim {sim_id}")
    except (OSError, ValueError):
        return None
    return metadata.get("input_version")


@dg.sensor(
    name="sim_discovery_sensor",
    minimum_interval_seconds=120,
    default_status=SENSOR_STATUS,
    asset_selection=dg.AssetSelection.assets("kappa_maps"),
    description=(
        "Registers new simulations as partitions and requests their kappa maps once; "
        "observes sim_inputs when a sim's inputs changed."
    ),
)
def sim_discovery_sensor(
    context: dg.SensorEvaluationContext,
    storage: LensingStorage,
    kappa_source: KappaSourceResource,
) -> dg.SensorResult:
    """One tick: discover, register, version; see the module docstring."""
    state = json.loads(context.cursor) if context.cursor else {}
    versions: dict[str, str] = state.get("versions", {})
    requested: set[str] = set(state.get("requested", []))
    settings = kappa_source.settings()
    found = discover_sim_ids(settings)
    known = set(context.instance.get_dynamic_partitions(SIMS_PARTITIONS))
    new = [str(s) for s in found if str(s) not in known]
    source = kappa_source.build()
    root = storage.data_root()
    cache = root.input_hash_cache()
    events = []
    for sim_id in found:
        key = str(sim_id)
        try:
            version = input_version(source, sim_id, cache=cache)
        except (KeyError, FileNotFoundError) as err:
            context.log.warning(f"sim {sim_id}: inputs not observable: {err}")
            continue
        before = versions.get(key) or recorded_input_version(root, sim_id)
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
    cache.save()
    done = context.instance.get_materialized_partitions(KAPPA_KEY)
    to_request = [key for key in new if key not in done and key not in requested]
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
