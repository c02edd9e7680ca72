"""Partition definitions: sims are dynamic partitions, registered in the instance.

The sim partitions (``sims``) live in the Dagster instance, so that simulations that appear
in the source become partitions without a restart: the discovery sensor registers them; the
configured suite's sims are registered when the definitions load
(:mod:`lensing_assets.defs.registration`), and ``python -m lensing_assets.register`` does it
on demand.

The sim x lmax key reads ``SIM|LMAX`` (e.g. ``109|600``): Dagster orders the parts of a
multi-partition key by dimension *name*, and ``"sim" < "tile_lmax"``. The configuration key
of the shards and models reads ``LMAX|NOISE`` (e.g. ``200|des_y3``): ``"lmax" < "noise"``.
"""

from __future__ import annotations

import dagster as dg

from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE

SIM_DIM = "sim"
LMAX_DIM = "tile_lmax"

SIMS_PARTITIONS = "sims"
sim_partitions_def = dg.DynamicPartitionsDefinition(name=SIMS_PARTITIONS)
lmax_partitions_def = dg.StaticPartitionsDefinition([str(lmax) for lmax in LMAX_TO_NSIDE])
sim_lmax_partitions_def = dg.MultiPartitionsDefinition(
    {SIM_DIM: sim_partitions_def, LMAX_DIM: lmax_partitions_def}
)


def _dims(
    partitions_def: dg.MultiPartitionsDefinition, partition_key: dg.MultiPartitionKey | str
) -> dict[str, str]:
    key = (
        partition_key
        if isinstance(partition_key, dg.MultiPartitionKey)
        else partitions_def.get_partition_key_from_str(partition_key)
    )
    return dict(key.keys_by_dimension)


def sim_lmax_of(partition_key: dg.MultiPartitionKey | str) -> tuple[int, int]:
    """``(sim_id, lmax)`` of a sim x lmax partition key such as ``"109|600"``."""
    dims = _dims(sim_lmax_partitions_def, partition_key)
    return int(dims[SIM_DIM]), int(dims[LMAX_DIM])


# Key "600|des_y3" is the configuration lmax_600_des_y3.
dataset_partitions_def = dg.MultiPartitionsDefinition(
    {"lmax": lmax_partitions_def, "noise": dg.StaticPartitionsDefinition(list(NOISE_LEVELS))}
)


def config_of(partition_key: dg.MultiPartitionKey | str) -> tuple[int, str]:
    """``(lmax, noise_level)`` of a configuration key such as ``"200|des_y3"``."""
    dims = _dims(dataset_partitions_def, partition_key)
    return int(dims["lmax"]), dims["noise"]


def register_sims(instance: dg.DagsterInstance, sim_ids: list[int]) -> list[int]:
    """Add the sims of *sim_ids* that are not partitions yet; returns those added, sorted."""
    known = set(instance.get_dynamic_partitions(SIMS_PARTITIONS))
    new = sorted({int(s) for s in sim_ids if str(int(s)) not in known})
    if new:
        instance.add_dynamic_partitions(SIMS_PARTITIONS, [str(s) for s in new])
    return new
