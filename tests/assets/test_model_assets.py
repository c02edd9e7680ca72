"""compressor_model, npe_model and fom_report through Dagster, from real tile partitions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from lensing_assets.definitions import defs
from lensing_assets.defs.dataset import tile_shards
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.models import (
    GPU_POOL,
    CompressorRunConfig,
    NPERunConfig,
    compressor_model,
    npe_model,
)
from lensing_assets.defs.reports import fom_report
from lensing_assets.defs.resources import TrainingResource
from lensing_assets.defs.tiles import tiles
from lensing_core.inference.config import CompressorConfig, compressor_preset
from lensing_core.inference.npe import NPEConfig
from lensing_core.storage import DataRoot
from tests.fixtures.dagster import ephemeral_instance

SIMS = (7, 12, 20, 109)
KEY = "200|des_y3"


def _run(
    asset: dg.AssetsDefinition,
    key: str,
    resources: dict,
    instance: dg.DagsterInstance,
    config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {asset.op.name: {"config": config}}} if config else None
    return dg.materialize(
        [asset],
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (failure,) = result.get_step_failure_events()
    return failure.step_failure_data.error.message


def test_run_configs_mirror_the_core_configs() -> None:
    """Every core setting can be set from the run config; the NPE defaults are the core's."""
    compressor_fields = {f.name for f in dataclasses.fields(CompressorConfig)}
    assert set(CompressorRunConfig.model_fields) == compressor_fields | {"max_steps"}
    npe_defaults = dataclasses.asdict(NPEConfig())
    assert set(NPERunConfig.model_fields) == set(npe_defaults) | {"augment_rolls"}
    assert NPERunConfig().to_core() == NPEConfig()
    preset = compressor_preset("cpu_demo")
    assert CompressorRunConfig().to_core(preset) == preset
    changed = CompressorRunConfig(max_epochs=3, backbone="efficientnet_b0").to_core(preset)
    assert (changed.max_epochs, changed.backbone, changed.lr) == (3, "efficientnet_b0", preset.lr)


def test_training_goes_through_the_gpu_pool_and_run_tag() -> None:
    """One training step at a time per GPU (pool) and one training run at a time (tag)."""
    for asset in (compressor_model, npe_model):
        assert asset.op.pool == GPU_POOL
    for name in ("compressor_job", "npe_job"):
        assert defs.resolve_job_def(name).tags["lensing/resource"] == "gpu"


def test_repository_instance_limits_runs_and_the_gpu_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository's dagster.yaml, as env.sh installs it: run queue and pool limits."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(Path(__file__).parents[2] / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    concurrency = dg.DagsterInstance.from_config(str(home)).get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1  # the "gpu" pool: one step at once
    runs = concurrency.run_queue_config
    assert runs.max_concurrent_runs == 2
    limits = {(lim["key"], lim.get("value")): lim["limit"] for lim in runs.tag_concurrency_limits}
    assert limits[("lensing/resource", "gpu")] == 1


@pytest.mark.slow
def test_models_and_report_from_tiles(data_root: Path, test_resources: dict) -> None:
    """tiles -> shards -> compressor -> NPE -> report, with the report in the metadata."""
    resources = {**test_resources, "training": TrainingResource(preset="cpu_demo")}
    instance = ephemeral_instance()
    for sim in SIMS:
        assert _run(kappa_maps, str(sim), resources, instance).success
        assert _run(tiles, f"{sim}|200", resources, instance).success
    assert _run(tile_shards, KEY, resources, instance).success
    early = _failure_message(_run(npe_model, KEY, resources, instance))
    assert "configuration lmax_200_des_y3: no trained compressor" in early
    assert f"--select compressor_model --partition '{KEY}'" in early

    comp = _run(compressor_model, KEY, resources, instance, {"max_epochs": 2, "batch_size": 8})
    assert comp.success
    meta = comp.asset_materializations_for_node("compressor_model")[0].metadata
    root = DataRoot(data_root)
    assert meta["path"].value == str(root.compressor(200, "des_y3").dir / "best.ckpt")
    assert meta["backbone"].value == "test_efficientnet"
    assert meta["device"].value == "cpu"
    assert meta["epochs"].value == 2
    assert {row.data["split"] for row in meta["r2"].value.records} == {"train", "val", "test"}
    assert meta["config"].value["batch_size"] == 8

    npe = _run(npe_model, KEY, resources, instance, {"max_epochs": 3})
    assert npe.success
    npe_meta = npe.asset_materializations_for_node("npe_model")[0].metadata
    assert npe_meta["path"].value == str(root.npe(200, "des_y3").dir / "npe_best.ckpt")
    assert npe_meta["epochs"].value <= 3

    report = _run(fom_report, KEY, resources, instance)
    assert report.success
    rmeta = report.asset_materializations_for_node("fom_report")[0].metadata
    assert rmeta["path"].value == str(root.npe(200, "des_y3").dir / "fom_result.json")
    assert rmeta["figure"].value.startswith("![FoM report](data:image/png;base64,iVBOR")
    quantities = {row.data["quantity"] for row in rmeta["fom"].value.records}
    assert {"fom_fiducial_median", "fom_prior", "coverage_68", "coverage_95"} <= quantities
    assert len(rmeta["fom_fiducial_all"].value) == 12
    assert Path(rmeta["figure_path"].value).is_file()
    for asset in ("compressor_model", "npe_model", "fom_report"):
        assert KEY in instance.get_materialized_partitions(dg.AssetKey(asset))


@pytest.mark.parametrize("asset", [compressor_model, npe_model, fom_report])
def test_missing_shards_name_configuration_and_command(
    asset: dg.AssetsDefinition, data_root: Path, test_resources: dict
) -> None:
    """Each model asset of a configuration without shards says so and how to make them."""
    resources = {**test_resources, "training": TrainingResource(preset="cpu_demo")}
    result = _run(asset, "400|lsst_y10", resources, ephemeral_instance())
    message = _failure_message(result)
    assert "configuration lmax_400_lsst_y10" in message
    assert str(data_root / "hf_dataset" / "data" / "lmax_400_lsst_y10") in message
    assert "--select tile_shards --partition '400|lsst_y10'" in message
    assert not (data_root / "models").exists()
