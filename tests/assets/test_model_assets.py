"""compressor_model, npe_model and fom_report through Dagster, from real tile partitions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lensing_assets import build_defs
from lensing_assets.defs.dataset import tile_shards
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.models import GPU_POOL
from lensing_assets.defs.run_config import run_config_class, to_core
from lensing_assets.defs.tiles import tiles
from lensing_core.inference.calibration import VERDICTS
from lensing_core.inference.config import CompressorConfig, TrainingSettings, compressor_preset
from lensing_core.inference.fom import read_fom_result
from lensing_core.inference.npe import NPEConfig
from lensing_core.storage import DataRoot
from tests.fixtures.dagster import ephemeral_instance, settings_for

#: 12 sims besides the fiducial: the fewest the default split by simulation takes
SIMS = (3, 7, 12, 20, 25, 31, 40, 44, 52, 60, 71, 88, 109)
KEY = "200|des_y3"
CONFIG = "lmax_200_des_y3"


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


def _config_fields(asset: dg.AssetsDefinition) -> dict[str, Any]:
    """The run config fields of *asset* in its Launchpad schema."""
    return dict(asset.op.config_schema.config_type.fields)


def test_run_configs_mirror_the_core_configs(test_defs: dg.Definitions) -> None:
    """Every core setting can be set from the run config; the defaults are the deployment's."""
    preset = compressor_preset("cpu_demo")
    compressor = _config_fields(test_defs.get_assets_def("compressor_model"))
    assert set(compressor) == {f.name for f in dataclasses.fields(CompressorConfig)} | {"max_steps"}
    assert compressor["backbone"].default_value == preset.backbone == "test_efficientnet"
    npe = _config_fields(test_defs.get_assets_def("npe_model"))
    npe_defaults = dataclasses.asdict(NPEConfig())
    assert set(npe) == set(npe_defaults)
    assert {name: field.default_value for name, field in npe.items()} == npe_defaults
    RunConfig = run_config_class("CompressorRunConfig", preset, {"max_steps": (int | None, None)})
    assert to_core(RunConfig(), preset) == preset
    changed = to_core(RunConfig(max_epochs=3, backbone="efficientnet_b0"), preset)
    assert (changed.max_epochs, changed.backbone, changed.lr) == (3, "efficientnet_b0", preset.lr)


def test_a_new_compressor_setting_reaches_the_launchpad(data_root: Path) -> None:
    """A field added to CompressorConfig is in the asset's run config, with no other edit."""
    extended = dataclasses.make_dataclass(
        "CompressorConfig",
        [("dropout", float, 0.1)],
        bases=(CompressorConfig,),
        frozen=True,
        slots=True,
    )
    preset = extended(**dataclasses.asdict(compressor_preset("cpu_demo")))
    training = TrainingSettings(preset="cpu_demo", compressor=preset)
    defs = build_defs(settings_for(data_root, training=training))
    fields = _config_fields(defs.get_assets_def("compressor_model"))
    assert fields["dropout"].default_value == 0.1
    job = defs.resolve_job_def("compressor_job")
    ok = {"ops": {"compressor_model": {"config": {"dropout": 0.3}}}}
    assert dg.validate_run_config(job, ok)["ops"]["compressor_model"]["config"]["dropout"] == 0.3
    with pytest.raises(dg.DagsterInvalidConfigError, match="dropout_rate"):
        dg.validate_run_config(job, {"ops": {"compressor_model": {"config": {"dropout_rate": 1}}}})


def test_training_goes_through_the_gpu_pool_and_run_tag(test_defs: dg.Definitions) -> None:
    """One training step at a time per GPU (pool) and one training run at a time (tag)."""
    for name in ("compressor_model", "npe_model"):
        assert test_defs.get_assets_def(name).op.pool == GPU_POOL
    for name in ("compressor_job", "npe_job"):
        assert test_defs.resolve_job_def(name).tags["lensing/resource"] == "gpu"


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
def test_models_and_report_from_tiles(
    data_root: Path, test_resources: dict, test_defs: dg.Definitions
) -> None:
    """tiles -> shards -> compressor -> NPE -> report, with the report in the metadata."""
    resources = test_resources
    compressor_model, npe_model, fom_report = (
        test_defs.get_assets_def(name) for name in ("compressor_model", "npe_model", "fom_report")
    )
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
    assert {row.data["split"] for row in meta["r2"].value.records} == {"train", "val"}
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
    # calibration, seed spread and the fiducial's pulls, in the UI
    assert rmeta["calibration_verdict"].value in VERDICTS
    assert rmeta["calibration"].value.startswith("![calibration, test split](data:image/png")
    assert rmeta["n_seeds"].value == 3
    assert rmeta["fom_seed_std"].value > 0
    assert rmeta["n_fiducial_realizations"].value == 1  # sim 109 alone in this suite
    assert {row.data["point"] for row in rmeta["pulls"].value.records} == {"sim109"}
    assert "cannot be measured" in rmeta["projection"].value
    assert rmeta["compressor_loss"].value == "mse"
    for asset in ("compressor_model", "npe_model", "fom_report"):
        assert KEY in instance.get_materialized_partitions(dg.AssetKey(asset))
    _study_from_the_same_shards(test_defs, resources, instance, root)


def _study_from_the_same_shards(
    defs: dg.Definitions, resources: dict, instance: dg.DagsterInstance, root: DataRoot
) -> None:
    """band_powers -> cl_fom_report, fisher_forecast, then study_report, metadata in the UI."""
    band_powers, cl_fom_report, fisher_forecast, study_report = (
        defs.get_assets_def(name)
        for name in ("band_powers", "cl_fom_report", "fisher_forecast", "study_report")
    )
    early = _failure_message(_run(cl_fom_report, KEY, resources, instance))
    assert "band powers of configuration lmax_200_des_y3 are missing" in early
    assert f"--select band_powers --partition '{KEY}'" in early
    bp = _run(band_powers, KEY, resources, instance)
    assert bp.success
    bp_meta = bp.asset_materializations_for_node("band_powers")[0].metadata
    assert bp_meta["path"].value == str(root.band_powers_path(200, "des_y3"))
    assert bp_meta["rows"].value == 4 * 12 * len(SIMS)
    assert len(bp_meta["mean_auto_band_powers"].value) == 4

    cl = _run(cl_fom_report, KEY, resources, instance, None)
    assert cl.success
    cl_meta = cl.asset_materializations_for_node("cl_fom_report")[0].metadata
    assert cl_meta["path"].value == str(root.cl_fom_result_path(200, "des_y3"))
    assert cl_meta["figure"].value.startswith("![FoM report](data:image/png;base64,iVBOR")
    assert len(cl_meta["fom_fiducial_all"].value) == 12
    assert cl_meta["calibration_verdict"].value in VERDICTS
    assert cl_meta["n_seeds"].value == 3
    field = read_fom_result(root.npe(200, "des_y3").fom_result)
    cl_record = read_fom_result(root.cl_fom_result_path(200, "des_y3"))
    assert cl_record["split_sha256"] == field["split_sha256"]  # the same sims in each set
    assert cl_record["n_sims"] == field["n_sims"]

    fisher = _run(fisher_forecast, KEY, resources, instance)
    assert fisher.success
    f_meta = fisher.asset_materializations_for_node("fisher_forecast")[0].metadata
    assert f_meta["path"].value == str(root.fisher_path(200, "des_y3"))
    assert f_meta["fom_fisher"].value > f_meta["fom_prior"].value > 0
    assert f_meta["fom_fisher_fixed"].value > f_meta["fom_fisher"].value
    names = [row.data["parameter"] for row in f_meta["parameters"].value.records]
    assert names == ["Omega_m", "S8", "w", "h", "n_s", "Omega_bh2", "m_nu"]

    study = dg.materialize(
        [study_report], resources=resources, instance=instance, raise_on_error=False
    )
    assert study.success
    s_meta = study.asset_materializations_for_node("study_report")[0].metadata
    assert s_meta["path"].value == str(root.study_dir / "study.json")
    assert s_meta["n_complete"].value == 1  # 200|des_y3; the 14 others are shown as missing
    assert s_meta["n_configurations"].value == 15
    assert s_meta["figure"].value.startswith("![FoM against lmax")
    (row,) = [r.data for r in s_meta["study"].value.records if r.data["config"] == CONFIG]
    assert row["fom_field"] == pytest.approx(field["fom_fiducial_median"])
    assert row["fom_cl"] == pytest.approx(cl_record["fom_fiducial_median"])
    assert row["fom_fisher"] == pytest.approx(f_meta["fom_fisher"].value)
    assert row["field_over_cl"] == pytest.approx(row["fom_field"] / row["fom_cl"])
    report = s_meta["report"].value
    assert "| 200 |" in report
    assert "missing" in report


@pytest.mark.parametrize(
    "name", ["compressor_model", "npe_model", "fom_report", "band_powers", "cl_fom_report"]
)
def test_missing_shards_name_configuration_and_command(
    name: str, data_root: Path, test_resources: dict, test_defs: dg.Definitions
) -> None:
    """Each model asset of a configuration without shards says so and how to make them."""
    asset = test_defs.get_assets_def(name)
    result = _run(asset, "400|lsst_y10", test_resources, ephemeral_instance())
    message = _failure_message(result)
    assert "configuration lmax_400_lsst_y10" in message
    assert str(data_root / "hf_dataset" / "data" / "lmax_400_lsst_y10") in message
    assert "--select tile_shards --partition '400|lsst_y10'" in message
    assert not (data_root / "models").exists()
