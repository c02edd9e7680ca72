"""Automation conditions: per-sim assets follow their inputs; fan-in assets wait for calm.

A per-sim asset rebuilds exactly the partitions whose inputs changed; an asset that gathers
every sim (shards, dataset, models, reports) is requested once after a wave of upstream
updates has settled, so that it is not rebuilt once per sim.
"""

import dagster as dg

AC = dg.AutomationCondition

#: ``kappa_maps`` and ``tiles``: a partition is requested when one of its own upstream
#: partitions was updated (a new observation of ``sim_inputs[s]``, then ``kappa_maps[s]``),
#: when it went missing, or when the asset's code version changed (every partition); never
#: while it or an upstream partition is in progress, never while an upstream partition is
#: missing. A changed input of sim s thus rebuilds ``kappa_maps[s]`` and its five
#: ``tiles[s|*]``, nothing else at that level.
per_partition = (AC.eager() | (AC.code_version_changed() & ~AC.in_progress())).with_label(
    "inputs changed, missing, or new code version"
)

_busy = AC.in_progress() | AC.will_be_requested() | AC.newly_updated()
_settled = ~AC.any_deps_match(_busy | AC.any_deps_match(_busy)).with_label(
    "upstream settled (two levels: nothing in progress, requested or newly updated)"
)

#: ``tile_shards``, ``hf_dataset``: requested once after a wave of upstream updates has
#: settled: some upstream partition was materialized since the asset was last requested
#: or materialized, and at this tick no upstream partition, nor any partition upstream of
#: those, is in progress, requested, or newly updated. Missing or failed upstream partitions
#: do not block it (no ``~any_deps_missing``: ``eager()`` would wait forever on one failed
#: sim).
fan_in = (
    AC.any_deps_match(AC.newly_updated())
    .since_last_handled()
    .with_label("upstream materialized since last handled")
    & _settled
    & ~AC.in_progress()
).with_label("fan-in: once after an upstream wave settles")

#: The models and reports: as :data:`fan_in`, but only for configurations already built (a new
#: configuration is trained when someone asks for it: training is the expensive step).
rebuild_model = (fan_in & ~AC.missing()).with_label("rebuild when settled (built configs only)")
