"""The Definitions load, with the expected assets, dependencies and partitions."""

from __future__ import annotations

import dagster as dg

from lensing_assets.defs.partitions import (
    register_sims,
    sim_lmax_of,
    sim_lmax_partitions_def,
    sim_partitions_def,
)
from lensing_core.sims.catalog import synthetic_catalog
from tests.fixtures.dagster import ephemeral_instance


def test_definitions_load_with_expected_graph(test_defs: dg.Definitions) -> None:
    """Asset keys and dependencies: kappa -> tiles -> shards -> HF dataset, models, the study."""
    defs = test_defs
    graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents == {
        "sim_inputs": set(),
        "kappa_maps": {"sim_inputs"},
        "tiles": {"kappa_maps"},
        "tile_shards": {"tiles"},
        "hf_dataset": {"tile_shards"},
        "compressor_model": {"tile_shards"},
        "npe_model": {"compressor_model"},
        "fom_report": {"npe_model"},
        "band_powers": {"tile_shards"},
        "cl_fom_report": {"band_powers"},
        "fisher_forecast": set(),
        "study_report": {"fom_report", "cl_fom_report", "fisher_forecast"},
    }
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert jobs >= {
        "kappa_job",
        "tiles_job",
        "shards_job",
        "hf_dataset_job",
        "compressor_job",
        "npe_job",
        "fom_report_job",
        "band_powers_job",
        "cl_report_job",
        "fisher_job",
        "study_config_job",
        "study_job",
    }


def test_sim_partitions_are_registered_from_the_configured_catalog() -> None:
    """Sim partitions live in the instance: registering the suite gives its ids, once."""
    instance = dg.DagsterInstance.ephemeral()
    assert sim_partitions_def.get_partition_keys(dynamic_partitions_store=instance) == []
    ids = synthetic_catalog().sim_ids
    assert register_sims(instance, ids) == sorted(ids)
    assert register_sims(instance, [*ids[:3], 5000]) == [5000]
    keys = sim_partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    assert sorted(map(int, keys)) == sorted([*ids, 5000])
    dims = {
        d.name: d.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        for d in sim_lmax_partitions_def.partitions_defs
    }
    assert dims["tile_lmax"] == ["200", "400", "600", "800", "1000"]
    all_keys = sim_lmax_partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    assert len(all_keys) == 792 * 5


def test_key_109_600_is_sim_109_at_lmax_600() -> None:
    """Dagster orders key parts by dimension name: ``109|600`` must mean sim 109, lmax 600."""
    key = sim_lmax_partitions_def.get_partition_key_from_str("109|600")
    assert key.keys_by_dimension == {"sim": "109", "tile_lmax": "600"}
    assert sim_lmax_of("109|600") == (109, 600)
    keys = sim_lmax_partitions_def.get_partition_keys(dynamic_partitions_store=ephemeral_instance())
    assert "109|600" in keys
    assert "600|109" not in keys


def test_tiles_depend_on_the_same_sim_kappa_partition(test_defs: dg.Definitions) -> None:
    """Partition mapping: tiles[109|600] reads kappa_maps[109] and nothing else."""
    graph = test_defs.resolve_asset_graph()
    mapping = graph.get_partition_mapping(dg.AssetKey("tiles"), dg.AssetKey("kappa_maps"))
    instance = ephemeral_instance()
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            sim_lmax_partitions_def.subset_with_partition_keys(["109|600"]),
            sim_lmax_partitions_def,
            sim_partitions_def,
        )
    assert set(upstream.partitions_subset.get_partition_keys()) == {"109"}


def test_shards_of_a_configuration_read_every_sim_at_its_lmax(test_defs: dg.Definitions) -> None:
    """tile_shards[600|des_y3] (configuration lmax_600_des_y3) depends on tiles[s|600], all s."""
    from lensing_assets.defs.dataset import dataset_partitions_def

    graph = test_defs.resolve_asset_graph()
    mapping = graph.get_partition_mapping(dg.AssetKey("tile_shards"), dg.AssetKey("tiles"))
    key = dataset_partitions_def.get_partition_key_from_str("600|des_y3")
    assert key.keys_by_dimension == {"lmax": "600", "noise": "des_y3"}
    instance = ephemeral_instance()
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            dataset_partitions_def.subset_with_partition_keys(["600|des_y3"]),
            dataset_partitions_def,
            sim_lmax_partitions_def,
        )
        sims = sim_partitions_def.get_partition_keys()
        assert set(upstream.partitions_subset.get_partition_keys()) == {f"{s}|600" for s in sims}
    assert len(dataset_partitions_def.get_partition_keys()) == 15


def test_every_computed_asset_declares_a_code_version(test_defs: dg.Definitions) -> None:
    """Bumping one (e.g. lensing_core.products.TILES_CODE_VERSION) makes its partitions stale."""
    defs = test_defs
    versions = {}
    for asset in defs.assets:  # type: ignore[union-attr]
        by_key = getattr(asset, "code_versions_by_key", {})  # a SourceAsset has none
        versions.update({k.to_user_string(): v for k, v in by_key.items()})
    computed = {k.to_user_string() for k in defs.resolve_all_asset_keys()} - {"sim_inputs"}
    assert {name for name, version in versions.items() if version} == computed
    assert versions["tiles"] == "tiles-2"
