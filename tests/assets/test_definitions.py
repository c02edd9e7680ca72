"""The Definitions load, with the expected assets, dependencies and partitions."""

from __future__ import annotations

import dagster as dg

from lensing_assets import defs
from lensing_assets.defs.partitions import (
    sim_lmax_of,
    sim_lmax_partitions_def,
    sim_partitions_def,
)
from lensing_core.sims.catalog import synthetic_catalog


def test_definitions_load_with_expected_graph() -> None:
    """Asset keys and dependencies are exactly the kappa -> tiles slice."""
    graph = defs.resolve_asset_graph()
    assert graph.get_all_asset_keys() == {dg.AssetKey("kappa_maps"), dg.AssetKey("tiles")}
    assert graph.get(dg.AssetKey("tiles")).parent_keys == {dg.AssetKey("kappa_maps")}
    assert graph.get(dg.AssetKey("kappa_maps")).parent_keys == set()
    assert {job.name for job in defs.resolve_all_job_defs()} >= {"kappa_job", "tiles_job"}


def test_partitions_follow_the_configured_catalog() -> None:
    """Sim partitions are the default suite's ids; lmax partitions the five band limits."""
    assert sim_partitions_def.get_partition_keys() == [str(i) for i in synthetic_catalog().sim_ids]
    dims = {
        d.name: d.partitions_def.get_partition_keys()
        for d in sim_lmax_partitions_def.partitions_defs
    }
    assert dims["tile_lmax"] == ["200", "400", "600", "800", "1000"]
    assert len(sim_lmax_partitions_def.get_partition_keys()) == 791 * 5


def test_key_109_600_is_sim_109_at_lmax_600() -> None:
    """Dagster orders key parts by dimension name: ``109|600`` must mean sim 109, lmax 600."""
    key = sim_lmax_partitions_def.get_partition_key_from_str("109|600")
    assert key.keys_by_dimension == {"sim": "109", "tile_lmax": "600"}
    assert sim_lmax_of("109|600") == (109, 600)
    assert "109|600" in sim_lmax_partitions_def.get_partition_keys()
    assert "600|109" not in sim_lmax_partitions_def.get_partition_keys()


def test_tiles_depend_on_the_same_sim_kappa_partition() -> None:
    """Partition mapping: tiles[109|600] reads kappa_maps[109] and nothing else."""
    graph = defs.resolve_asset_graph()
    mapping = graph.get_partition_mapping(dg.AssetKey("tiles"), dg.AssetKey("kappa_maps"))
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        sim_lmax_partitions_def.subset_with_partition_keys(["109|600"]),
        sim_lmax_partitions_def,
        sim_partitions_def,
    )
    assert set(upstream.partitions_subset.get_partition_keys()) == {"109"}
