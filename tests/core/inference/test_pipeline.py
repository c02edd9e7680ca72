"""One configuration from its shards to its report: files, provenance and bad input.

Real tiles (nside-128 synthetic maps, lmax 200) of seven sims, and of the fiducial realized
twice at sim 109's parameters (109 and 10001) and twice at the prior's centre (20001, 20002);
the compressor is timm's ``test_efficientnet`` trained for a few steps: these tests check the
mechanics, ``tests/assets/test_demo_learns.py`` that the demo really learns.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from lensing_core.dataset.loader import TileDataset, realization_rows
from lensing_core.dataset.normalization import load_norm_stats, normalize_theta
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import SplitSpec, load_split
from lensing_core.inference import npe as npe_module
from lensing_core.inference import pipeline
from lensing_core.inference.compressor import (
    SYMMETRY_GROUPS,
    augment_tiles,
    draw_symmetries,
    load_compressor,
)
from lensing_core.inference.config import CompressorConfig, compressor_preset
from lensing_core.inference.fom import FOM_RESULT_KEYS, read_fom_result
from lensing_core.inference.npe import NPEConfig, load_npe, load_npe_seeds
from lensing_core.inference.pipeline import (
    fom_report,
    open_config,
    resolve_device,
    train_compressor,
    train_npe,
)
from lensing_core.inference.training import evaluate_split
from lensing_core.io import InputMissingError
from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import (
    FIDUCIAL_SIM_ID,
    SimCatalog,
    fiducial_point,
    fiducial_realizations,
    synthetic_catalog,
)
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot

FIDUCIAL_SIMS = (FIDUCIAL_SIM_ID, 10001, 20001, 20002)  # K = 2 realizations per point
SIMS = (3, 7, 12, 21, 33, 45, 58, *FIDUCIAL_SIMS)
#: whole sims per set: 3 (a prior of 3 parameter points) / 1 / 1 / 1 / 1 of the 7
SPLIT = SplitSpec(fractions=(3 / 7, 1 / 7, 1 / 7, 1 / 7, 1 / 7))
N_REAL = 4  # TilingOptions().noise_realizations
LMAX, NOISE = 200, "des_y3"
CONFIG = "lmax_200_des_y3"
TINY = CompressorConfig(
    backbone="test_efficientnet", batch_size=8, max_epochs=2, lr=1e-3, warmup_epochs=0.5
)
NPE_TINY = NPEConfig(batch_size=16, max_epochs=3, patience=2)


@pytest.fixture(scope="module")
def catalog() -> SimCatalog:
    design = synthetic_catalog(110)
    return SimCatalog({**design, **fiducial_realizations(2)}, name=design.name)


@pytest.fixture(scope="module")
def tiles_root(tmp_path_factory: pytest.TempPathFactory, catalog: SimCatalog) -> DataRoot:
    """Tile files of SIMS at lmax 200 (every noise level) and the des_y3 shards."""
    root = DataRoot(tmp_path_factory.mktemp("pipeline"))
    source = SyntheticSource(catalog, nside=128)
    for sim_id in SIMS:
        make_kappa(root, source, sim_id)
        make_tiles(root, sim_id, LMAX)
    write_config_shards(root, catalog, LMAX, NOISE, SIMS)
    return root


@pytest.fixture(scope="module")
def trained_root(tiles_root: DataRoot) -> DataRoot:
    """The chain run once: compressor, NPE, report."""
    train_compressor(tiles_root, LMAX, NOISE, TINY, split=SPLIT, accelerator="cpu")
    train_npe(tiles_root, LMAX, NOISE, NPE_TINY, device="cpu")
    fom_report(tiles_root, LMAX, NOISE, device="cpu")
    return tiles_root


@pytest.fixture
def copy_root(trained_root: DataRoot, tmp_path: Path) -> DataRoot:
    """A data root of this test's own (to damage) with the trained chain's files."""
    root = DataRoot(tmp_path / "root")
    shutil.copytree(trained_root.root, root.root, ignore=shutil.ignore_patterns(".tmp"))
    return root


def test_presets_and_device() -> None:
    assert compressor_preset("full").backbone == "efficientnetv2_s"
    assert compressor_preset("cpu_demo").backbone == "test_efficientnet"
    with pytest.raises(ValueError, match="unknown compressor preset 'huge'"):
        compressor_preset("huge")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_open_config_reads_the_shards(tiles_root: DataRoot) -> None:
    table, report = open_config(tiles_root, LMAX, NOISE)
    assert len(table) == report.rows == 12 * N_REAL * len(SIMS)
    assert table.tile_shape == (4, 128, 128)
    assert sorted(set(table.sim_id.tolist())) == sorted(SIMS)


def test_chain_writes_the_data_root_layout(trained_root: DataRoot) -> None:
    """The data-root layout: models/compressor/..., models/npe/..., and the report figure."""
    comp = trained_root.compressor(LMAX, NOISE).dir
    assert comp == trained_root.root / "models" / "compressor" / "lmax200_des_y3"
    for name in ("best.ckpt", "last.ckpt", "norm_stats.json", "split.json", "result.json"):
        assert (comp / name).is_file(), name
    npe_dir = trained_root.npe(LMAX, NOISE).dir
    assert npe_dir == trained_root.root / "models" / "npe" / "lmax200_des_y3"
    record = read_fom_result(trained_root.npe(LMAX, NOISE).fom_result)
    assert set(FOM_RESULT_KEYS) <= set(record)
    assert (record["lmax"], record["noise_level"]) == (LMAX, NOISE)
    assert len(record["fom_fiducial_all"]) == 12 * 2  # sim 109 and 10001
    assert record["compressor_checkpoint"] == str(comp / "best.ckpt")
    split = load_split(comp / "split.json")
    assert record["calibration"]["n_test"] == len(split.test)
    for key in ("coverage_68", "coverage_95"):
        assert 0.0 <= record["calibration"][key] <= 1.0
    assert np.isfinite(record["fom_fiducial_median"])
    assert record["fom_fiducial_median"] > 0
    assert record["fom_prior"] > 0
    assert set(record["r2_test"]) == {"Omega_m", "S8"}
    figure = Path(record["figure"])
    assert figure == trained_root.fom_figure_path(LMAX, NOISE)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((trained_root.root / "models").rglob("*.partial"))


def _physical_posteriors(
    root: DataRoot, rows: np.ndarray, seed_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and covariances of rows from the saved compressor and NPE, here.

    Physical covariance ``S C S`` with ``S = diag(theta_std)`` of the saved norm stats.
    """
    files = root.compressor(LMAX, NOISE)
    stats = load_norm_stats(files.norm_stats)
    compressor = load_compressor(files.best, map_location="cpu")
    npe = load_npe_seeds(root.npe(LMAX, NOISE).checkpoint)[seed_index]
    table, _ = open_config(root, LMAX, NOISE)
    tiles = torch.from_numpy(np.asarray(table.tiles[rows], dtype=np.float32))
    with torch.no_grad():
        mean, cov = npe.model.mean_cov(compressor.compress(tiles, batch_size=16))
    scale = np.outer(stats.theta_std, stats.theta_std)
    return (
        mean.double().numpy() * stats.theta_std + stats.theta_mean,
        cov.double().numpy() * scale,
    )


def _physical_foms(root: DataRoot, rows: np.ndarray, seed_index: int = 0) -> np.ndarray:
    """FoM of each row's posterior, ``1 / sqrt(det)`` by numpy, not by the library's helpers."""
    return 1.0 / np.sqrt(np.linalg.det(_physical_posteriors(root, rows, seed_index)[1]))


def _exact_point_rows(root: DataRoot) -> np.ndarray:
    split = load_split(root.compressor(LMAX, NOISE).split)
    table, _ = open_config(root, LMAX, NOISE)
    return split.fiducial[[fiducial_point(i) == "sim109" for i in table.sim_id[split.fiducial]]]


def test_report_foms_equal_those_of_the_saved_models(trained_root: DataRoot) -> None:
    """The FoMs of the record, recomputed from split, stats and every seed's NPE."""
    record = read_fom_result(trained_root.npe(LMAX, NOISE).fom_result)
    split = load_split(trained_root.compressor(LMAX, NOISE).split)
    exact = _exact_point_rows(trained_root)
    assert len(exact) == 24
    per_seed = [_physical_foms(trained_root, exact, k) for k in range(NPE_TINY.n_seeds)]
    medians = [float(np.median(f)) for f in per_seed]
    np.testing.assert_allclose(record["fom_seeds"], medians, rtol=1e-4)
    assert record["seeds"] == [NPE_TINY.seed + k for k in range(3)]
    assert record["fom_fiducial_median"] == pytest.approx(np.median(medians), rel=1e-4)
    assert record["fom_scatter"]["seed"] == pytest.approx(np.std(medians, ddof=1), rel=1e-3)
    rep = record["seeds"].index(record["representative_seed"])
    assert rep == int(np.argsort(medians)[1])  # the median of three
    fiducial = per_seed[rep]
    np.testing.assert_allclose(record["fom_fiducial_all"], fiducial, rtol=1e-4)
    assert record["fom_fiducial_std"] == pytest.approx(np.std(fiducial, ddof=1), rel=1e-3)
    table, _ = open_config(trained_root, LMAX, NOISE)
    per_real = [float(np.median(fiducial[table.sim_id[exact] == i])) for i in (109, 10001)]
    assert record["fom_scatter"]["realization"] == pytest.approx(np.std(per_real, ddof=1), rel=1e-3)
    test = _physical_foms(trained_root, split.test, rep)
    np.testing.assert_allclose(
        [record["fom_test_lo_16"], record["fom_test_median"], record["fom_test_hi_84"]],
        np.percentile(test, [16, 50, 84]),
        rtol=1e-4,
    )
    prior_cov = np.cov(table.theta[split.compressor_train], rowvar=False)  # physical units
    assert record["fom_prior"] == pytest.approx(1.0 / np.sqrt(np.linalg.det(prior_cov)), rel=1e-9)


def test_report_gives_the_pulls_at_both_fiducial_points(trained_root: DataRoot) -> None:
    """Offsets of the mean posterior mean per point, recomputed; the projection offset."""
    record = read_fom_result(trained_root.npe(LMAX, NOISE).fom_result)
    split = load_split(trained_root.compressor(LMAX, NOISE).split)
    table, _ = open_config(trained_root, LMAX, NOISE)
    # the ensemble's mean: the mean of the seeds' posterior means
    mean = np.mean(
        [_physical_posteriors(trained_root, split.fiducial, k)[0] for k in range(3)], axis=0
    )
    ids = table.sim_id[split.fiducial]
    points = record["fiducial"]["points"]
    assert list(points) == ["sim109", "prior_centre"]
    assert record["fiducial"]["n_realizations"] == 2
    for name, sims in (("sim109", (109, 10001)), ("prior_centre", (20001, 20002))):
        p = points[name]
        assert p["sim_ids"] == list(sims)
        assert p["n_tiles"] == [12, 12]
        per_real = np.stack([mean[ids == i].mean(axis=0) for i in sims])
        truth = table.theta[split.fiducial][ids == sims[0]][0]
        np.testing.assert_allclose(p["offset"], per_real.mean(axis=0) - truth, rtol=1e-4)
        np.testing.assert_allclose(p["pull"], np.array(p["offset"]) / p["offset_err"])
    np.testing.assert_allclose(
        points["sim109"]["theta"], points["prior_centre"]["theta"]
    )  # one (Omega_m, S8), other parameters apart
    proj = record["fiducial"]["projection"]
    assert proj["available"]
    np.testing.assert_allclose(
        proj["offset"],
        np.array(points["sim109"]["offset"]) - points["prior_centre"]["offset"],
    )
    assert "Projection offset" in proj["text"]


def test_report_gives_the_calibration_diagnostics(trained_root: DataRoot) -> None:
    record = read_fom_result(trained_root.npe(LMAX, NOISE).fom_result)
    split = load_split(trained_root.compressor(LMAX, NOISE).split)
    calib = record["calibration"]
    assert calib["verdict"] in ("calibrated", "over-confident", "under-confident", "mixed")
    assert calib["test"]["verdict"] == calib["verdict"]
    assert calib["test"]["n"] == len(split.test)
    assert set(calib["test"]) >= {"coverage", "sbc", "tarp"}
    assert set(calib["fiducial"]) == {"sim109", "prior_centre"}
    assert calib["fiducial"]["sim109"]["n"] == 24
    assert len(calib["seed_verdicts"]) == 3
    assert calib["posterior"] == "ensemble of 3 NPE seed(s)"
    # coverage of the ensemble posterior (mean of the means; mean covariance plus the means')
    table, _ = open_config(trained_root, LMAX, NOISE)
    seeds = [_physical_posteriors(trained_root, split.test, k) for k in range(3)]
    means = np.stack([m for m, _ in seeds])
    ens_mean = means.mean(axis=0)
    dev = means - ens_mean
    ens_cov = np.mean([c for _, c in seeds], axis=0) + np.einsum("sni,snj->nij", dev, dev) / 3
    d2 = np.einsum(
        "ni,nij,nj->n",
        table.theta[split.test] - ens_mean,
        np.linalg.inv(ens_cov),
        table.theta[split.test] - ens_mean,
    )
    assert calib["coverage_68"] == pytest.approx(np.mean(d2 <= chi2.ppf(0.68, 2)))
    assert calib["coverage_95"] == pytest.approx(np.mean(d2 <= chi2.ppf(0.95, 2)))
    figure = Path(record["calibration_figure"])
    assert figure == trained_root.calibration_figure_path(LMAX, NOISE)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_npe_uses_the_compressor_split_and_records_it(trained_root: DataRoot) -> None:
    split = load_split(trained_root.compressor(LMAX, NOISE).dir / "split.json")
    npe = load_npe(trained_root.npe(LMAX, NOISE).checkpoint)
    assert npe.extra["n_train"] == len(split.npe_train)
    assert npe.extra["n_val"] == len(split.npe_val)
    assert npe.extra["noise_realizations"] == N_REAL
    assert npe.extra["split_kind"] == "sim"
    assert npe.extra["config"] == CONFIG
    assert len(npe.extra["compressor_sha256"]) == 64
    assert npe.config == NPE_TINY
    table, _ = open_config(trained_root, LMAX, NOISE)
    assert not set(table.sim_id[split.npe_train]) & {FIDUCIAL_SIM_ID}


def test_interrupted_training_resumes_and_a_finished_one_starts_over(
    copy_root: DataRoot,
) -> None:
    comp = copy_root.compressor(LMAX, NOISE).dir
    cfg = CompressorConfig(**{**TINY.to_dict(), "max_epochs": 20})  # max_steps stops first
    first = train_compressor(
        copy_root, LMAX, NOISE, cfg, split=SPLIT, accelerator="cpu", max_steps=2
    )
    assert first.metrics["global_step"] == 2
    (comp / "result.json").unlink()  # as a run killed after its last checkpoint
    resumed = train_compressor(
        copy_root, LMAX, NOISE, cfg, split=SPLIT, accelerator="cpu", max_steps=7
    )
    assert resumed.metrics["resumed_from_step"] == 2
    assert resumed.metrics["global_step"] == 7
    again = train_compressor(
        copy_root, LMAX, NOISE, cfg, split=SPLIT, accelerator="cpu", max_steps=2
    )
    assert again.metrics["resumed_from_step"] is None
    assert again.metrics["global_step"] == 2


def test_missing_shards_name_the_configuration(copy_root: DataRoot) -> None:
    with pytest.raises(InputMissingError, match=r"lmax_400_des_y3.*shards\.json"):
        train_compressor(copy_root, 400, NOISE, TINY, split=SPLIT, accelerator="cpu")
    assert not copy_root.compressor(400, NOISE).dir.exists()


def test_missing_compressor_and_npe_are_named(copy_root: DataRoot, catalog: SimCatalog) -> None:
    write_config_shards(copy_root, catalog, LMAX, "lsst_y10", SIMS)
    with pytest.raises(InputMissingError, match=r"lmax_200_lsst_y10: no trained compressor"):
        train_npe(copy_root, LMAX, "lsst_y10", NPE_TINY, device="cpu")
    train_compressor(copy_root, LMAX, "lsst_y10", TINY, split=SPLIT, accelerator="cpu", max_steps=1)
    with pytest.raises(InputMissingError, match=r"lmax_200_lsst_y10: .*npe_best\.ckpt"):
        fom_report(copy_root, LMAX, "lsst_y10", device="cpu")


def test_too_few_sims_for_the_split(copy_root: DataRoot, catalog: SimCatalog) -> None:
    """Only the fiducial sim: no sim to train on; the message names config and directory."""
    write_config_shards(copy_root, catalog, LMAX, "noiseless", [FIDUCIAL_SIM_ID])
    shard_dir = copy_root.shards(LMAX, "noiseless").dir
    with pytest.raises(
        ValueError, match=rf"lmax_200_noiseless \({shard_dir}\): too few sims.*need at least 7"
    ):
        train_compressor(copy_root, LMAX, "noiseless", TINY, split=SPLIT, accelerator="cpu")
    assert not (copy_root.compressor(LMAX, "noiseless").dir / "best.ckpt").exists()


def test_no_fiducial_tiles_is_an_error_of_the_report(
    copy_root: DataRoot, catalog: SimCatalog
) -> None:
    write_config_shards(copy_root, catalog, LMAX, "noiseless", SIMS[: -len(FIDUCIAL_SIMS)])
    train_compressor(
        copy_root, LMAX, "noiseless", TINY, split=SPLIT, accelerator="cpu", max_steps=1
    )
    train_npe(copy_root, LMAX, "noiseless", NPEConfig(max_epochs=1), device="cpu")
    with pytest.raises(ValueError, match=r"lmax_200_noiseless: .* no tile of the fiducial sim"):
        fom_report(copy_root, LMAX, "noiseless", device="cpu")
    assert not (copy_root.npe(LMAX, "noiseless").fom_result).exists()


def test_corrupt_compressor_checkpoint_is_named(copy_root: DataRoot) -> None:
    best = copy_root.compressor(LMAX, NOISE).dir / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])
    npe_before = (copy_root.npe(LMAX, NOISE).checkpoint).read_bytes()
    with pytest.raises(ValueError, match=rf"{CONFIG}: .*{best}.* truncated or corrupt"):
        train_npe(copy_root, LMAX, NOISE, NPE_TINY, device="cpu")
    with pytest.raises(ValueError, match=rf"{CONFIG}: .*{best}.* truncated or corrupt"):
        fom_report(copy_root, LMAX, NOISE, device="cpu")
    assert (copy_root.npe(LMAX, NOISE).checkpoint).read_bytes() == npe_before


def test_corrupt_resume_checkpoint_is_named(copy_root: DataRoot) -> None:
    comp = copy_root.compressor(LMAX, NOISE).dir
    (comp / "result.json").unlink()
    (comp / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"{CONFIG}: .*last\.ckpt.* truncated or corrupt"):
        train_compressor(copy_root, LMAX, NOISE, TINY, split=SPLIT, accelerator="cpu")


def test_norm_stats_that_do_not_match_the_model(copy_root: DataRoot) -> None:
    path = copy_root.compressor(LMAX, NOISE).dir / "norm_stats.json"
    record = json.loads(path.read_text())
    record["tile_std"] = [2 * v for v in record["tile_std"]]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"{CONFIG}: the normalisation statistics in {path}"):
        train_npe(copy_root, LMAX, NOISE, NPE_TINY, device="cpu")


def test_report_refuses_an_npe_of_another_compressor(copy_root: DataRoot) -> None:
    other = CompressorConfig(**{**TINY.to_dict(), "seed": 7})
    train_compressor(copy_root, LMAX, NOISE, other, split=SPLIT, accelerator="cpu", max_steps=1)
    with pytest.raises(ValueError, match=rf"{CONFIG}: .*npe_best\.ckpt was trained on another"):
        fom_report(copy_root, LMAX, NOISE, device="cpu")


def test_changed_shards_are_not_used_with_an_old_split(
    copy_root: DataRoot, catalog: SimCatalog
) -> None:
    write_config_shards(copy_root, catalog, LMAX, NOISE, SIMS[1:])  # sim 3 dropped
    with pytest.raises(ValueError, match=rf"{CONFIG}: .*split\.json does not fit"):
        train_npe(copy_root, LMAX, NOISE, NPE_TINY, device="cpu")


def test_chain_split_keeps_every_sim_in_one_set(trained_root: DataRoot) -> None:
    """split.json of the chain: no sim id in two sets, one row (realisation 0) per tile."""
    split = load_split(trained_root.compressor(LMAX, NOISE).split)
    table, _ = open_config(trained_root, LMAX, NOISE)
    assert split.kind == "sim"
    sims = split.sims(table.sim_id)
    names = ("compressor_train", "compressor_val", "npe_train", "npe_val", "test", "fiducial")
    for i, a in enumerate(names):
        assert sims[a], f"{a} is empty"
        for b in names[i + 1 :]:
            assert not set(sims[a]) & set(sims[b]), f"sims in {a} and in {b}: {sims}"
    assert sorted(s for name in names for s in sims[name]) == sorted(SIMS)
    assert sims["fiducial"] == sorted(FIDUCIAL_SIMS)  # every realization held out
    for name in names:
        rows = getattr(split, name)
        assert np.all(table.columns["noise_realization"][rows] == 0)
        assert len(rows) == 12 * len(sims[name])


def test_models_are_selected_on_their_validation_sets_only(trained_root: DataRoot) -> None:
    """The best compressor and the kept NPE are the best on compressor-val and NPE-val."""
    files = trained_root.compressor(LMAX, NOISE)
    split = load_split(files.split)
    table, _ = open_config(trained_root, LMAX, NOISE)
    result = json.loads(files.result.read_text())
    assert set(result["r2"]) == {"train", "val"}  # the test set is graded by the report only
    compressor = load_compressor(files.best)
    val = evaluate_split(compressor, table, split.compressor_val)
    assert result["best_val_loss"] == pytest.approx(val["mse"], rel=1e-4)
    npe = load_npe(trained_root.npe(LMAX, NOISE).checkpoint)
    norm = load_norm_stats(files.norm_stats)
    rows = split.npe_val
    tiles = torch.from_numpy(np.asarray(table.tiles[rows], dtype=np.float32))
    theta = torch.from_numpy(np.asarray(normalize_theta(table.theta[rows], norm), np.float32))
    with torch.no_grad():
        nll = float(npe.model.nll(theta, compressor.compress(tiles)).mean())
    assert npe.extra["best_val_nll"] == pytest.approx(nll, rel=1e-4, abs=1e-5)
    # every seed's checkpoint records its own training, and the first lists them all
    spread = load_npe_seeds(trained_root.npe(LMAX, NOISE).checkpoint)
    assert [n.extra["seed"] for n in spread] == [42, 43, 44]
    listed = [entry["best_val_nll"] for entry in npe.extra["seeds"]]
    assert [n.extra["best_val_nll"] for n in spread] == listed
    for seed_npe in spread:
        with torch.no_grad():
            seed_nll = float(seed_npe.model.nll(theta, compressor.compress(tiles)).mean())
        assert seed_npe.extra["best_val_nll"] == pytest.approx(seed_nll, rel=1e-4, abs=1e-5)


def test_training_draws_every_noise_realization(
    copy_root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compressor and NPE batches take the tiles in all R realisations, evaluation only r = 0."""
    table, _ = open_config(copy_root, LMAX, NOISE)
    realization = table.columns["noise_realization"]
    seen: dict[str, list[int]] = {"compressor": [], "npe": []}
    gather = TileDataset.__getitems__

    def spy_gather(self: TileDataset, indices: Any) -> Any:
        seen["compressor"] += self.indices[np.asarray(indices)].tolist()
        return gather(self, indices)

    tiles_tensor = pipeline._tiles_tensor

    def spy_tiles(table: Any, rows: np.ndarray) -> torch.Tensor:
        seen["npe"] += np.asarray(rows).tolist()
        return tiles_tensor(table, rows)

    monkeypatch.setattr(TileDataset, "__getitems__", spy_gather)
    monkeypatch.setattr(pipeline, "_tiles_tensor", spy_tiles)
    train_compressor(copy_root, LMAX, NOISE, TINY, split=SPLIT, accelerator="cpu")
    train_npe(copy_root, LMAX, NOISE, NPE_TINY, device="cpu")
    split = load_split(copy_root.compressor(LMAX, NOISE).split)
    for name, rows in seen.items():
        counts = np.bincount(realization[rows], minlength=N_REAL)
        assert np.all(counts > 0), f"{name} never saw some realisations: {counts}"
    # training rows come from the training sets only; evaluation rows are realisation 0
    train_sims = set(table.sim_id[split.compressor_train]) | set(table.sim_id[split.npe_train])
    noisy = [r for r in seen["compressor"] + seen["npe"] if realization[r] > 0]
    assert set(table.sim_id[noisy]) <= train_sims


@pytest.mark.parametrize("symmetries", ["face", "square"])
def test_summary_cache_gives_the_on_the_fly_summaries(
    trained_root: DataRoot, symmetries: str
) -> None:
    """Cached summaries, drawn with the same generator, are those of augment-then-compress."""
    trained = pipeline._load_trained(trained_root, LMAX, NOISE, "cpu", None)
    table, compressor = trained.table, trained.compressor
    groups = realization_rows(table, trained.split.npe_train)  # (n_train, R)
    cache = pipeline.summary_table(compressor, table, groups, symmetries)
    n_group = len(SYMMETRY_GROUPS[symmetries])
    assert cache.shape == (len(groups), N_REAL, n_group, 2)
    index = torch.arange(len(groups)).repeat(3)
    on_the_fly_gen, cached_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    picks = torch.randint(N_REAL, (len(index),), generator=on_the_fly_gen)
    assert torch.equal(picks, torch.randint(N_REAL, (len(index),), generator=cached_gen))
    rows = torch.from_numpy(groups)[index, picks].numpy()
    tiles = torch.from_numpy(np.asarray(table.tiles[rows], dtype=np.float32))
    augmented = augment_tiles(tiles, symmetries=symmetries, generator=on_the_fly_gen)
    expected = compressor.compress(augmented)
    choice = draw_symmetries(len(index), symmetries, generator=cached_gen)
    assert len(set(choice.tolist())) == n_group
    torch.testing.assert_close(cache[index, picks, choice], expected, rtol=1e-5, atol=1e-5)


def test_npe_trains_alike_with_and_without_the_summary_cache(
    copy_root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is the default without rolls; its draws cover every realisation and symmetry,
    and the NPE it trains is the on-the-fly path's."""
    draws: list[int] = []
    fit_npe = npe_module.fit_npe
    one_seed = dataclasses.replace(NPE_TINY, n_seeds=1)

    def spy_fit(make_batch: Any, val_data: Any, cfg: Any, **kwargs: Any) -> Any:
        summaries, _ = make_batch(torch.zeros(800, dtype=torch.int64), torch.Generator())
        draws.append(len(torch.unique(summaries, dim=0)))
        return fit_npe(make_batch, val_data, cfg, **kwargs)

    monkeypatch.setattr(npe_module, "fit_npe", spy_fit)
    cached = train_npe(copy_root, LMAX, NOISE, one_seed, device="cpu").record
    fly = train_npe(copy_root, LMAX, NOISE, one_seed, device="cpu", summary_cache=False).record
    assert (cached["summary_cache"], fly["summary_cache"]) == (True, False)
    assert draws[0] == N_REAL * 4  # one tile: 4 realisations x 4 face symmetries
    assert draws[1] == N_REAL * 4
    np.testing.assert_allclose(cached["val_nll_history"], fly["val_nll_history"], rtol=1e-4)
    with pytest.raises(ValueError, match="no summary cache with circular rolls"):
        train_npe(
            copy_root,
            LMAX,
            NOISE,
            dataclasses.replace(NPE_TINY, augment_rolls=True),
            device="cpu",
            summary_cache=True,
        )
