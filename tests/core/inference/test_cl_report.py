"""The power-spectrum inference of a configuration: same split, same record, bad input named.

Real tiles (nside-128 synthetic maps, lmax 200, des_y3 with 4 noise realisations) of eight
sims, the fiducial among them; a few epochs of the band-power MLP and of the NPE: these tests
check the mechanics, ``tests/assets/test_demo_learns.py`` that the demo's power-spectrum
FoM is informative.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import SplitSpec, load_split, make_split, save_split
from lensing_core.inference import npe as npe_module
from lensing_core.inference import power_spectrum
from lensing_core.inference.cl_compressor import cl_features, load_cl_compressor
from lensing_core.inference.fom import FOM_RESULT_KEYS, fom_from_cov, read_fom_result
from lensing_core.inference.npe import NPEConfig, load_npe
from lensing_core.inference.power_spectrum import cl_fom_report, compute_band_powers
from lensing_core.io import InputMissingError, read_npz, write_npz
from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, SimCatalog, synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot

SIMS = (3, 7, 12, 21, 33, 45, 58, FIDUCIAL_SIM_ID)
SPLIT = SplitSpec(fractions=(3 / 7, 1 / 7, 1 / 7, 1 / 7, 1 / 7))
LMAX, NOISE, N_REAL = 200, "des_y3", 4
NPE_TINY = NPEConfig(batch_size=16, max_epochs=3, patience=2)
ARRAYS = ("band_powers", "edges", "theta", *power_spectrum.ROW_COLUMNS)


@pytest.fixture(scope="module")
def catalog() -> SimCatalog:
    return synthetic_catalog(110)


@pytest.fixture(scope="module")
def bp_root(tmp_path_factory: pytest.TempPathFactory, catalog: SimCatalog) -> DataRoot:
    """Shards of SIMS at 200|des_y3 and their band powers."""
    root = DataRoot(tmp_path_factory.mktemp("cl_report"))
    source = SyntheticSource(catalog, nside=128)
    for sim_id in SIMS:
        make_kappa(root, source, sim_id)
        make_tiles(root, sim_id, LMAX)
    write_config_shards(root, catalog, LMAX, NOISE, SIMS)
    compute_band_powers(root, LMAX, NOISE)
    return root


@pytest.fixture
def root(bp_root: DataRoot, tmp_path: Path) -> DataRoot:
    """A data root of this test's own (to damage or to add a field split to)."""
    copy = DataRoot(tmp_path / "root")
    shutil.copytree(bp_root.root, copy.root, ignore=shutil.ignore_patterns(".tmp", "tiles"))
    return copy


def _report(root: DataRoot, **kwargs: Any) -> dict[str, Any]:
    cl_fom_report(root, LMAX, NOISE, NPE_TINY, split=SPLIT, device="cpu", **kwargs)
    return read_fom_result(root.cl_fom_result_path(LMAX, NOISE))


def test_record_models_and_figure(root: DataRoot) -> None:
    """The field report's record, from models that are saved and give the same posteriors."""
    record = _report(root, compressor_epochs=5)
    assert set(FOM_RESULT_KEYS) <= set(record)
    assert record["summary"] == "cl"
    assert (record["lmax"], record["noise_level"], record["config"]) == (
        LMAX,
        NOISE,
        "lmax_200_des_y3",
    )
    assert len(record["fom_fiducial_all"]) == 12
    assert record["calibration"]["n_test"] == 12  # realisation 0 of the one test sim's tiles
    assert set(record["r2_test"]) == {"Omega_m", "S8"}
    assert record["fom_prior"] > 0
    assert record["fom_fiducial_median"] > 0
    assert Path(record["figure"]) == root.fom_figure_path(LMAX, NOISE, summary="cl")
    assert Path(record["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["figure"].endswith("reports/fom_cl/lmax200_des_y3.png")
    # the saved models reproduce the fiducial FoMs of the record
    arrays, _ = read_npz(root.band_powers_path(LMAX, NOISE), ARRAYS, what="band powers")
    compressor = load_cl_compressor(Path(record["compressor_checkpoint"]))
    npe = load_npe(root.cl_npe_path(LMAX, NOISE))
    fid = np.flatnonzero((arrays["sim_id"] == FIDUCIAL_SIM_ID) & (arrays["noise_realization"] == 0))
    summaries = compressor.compress(cl_features(arrays["band_powers"][fid]))
    with torch.no_grad():
        _, cov = npe.model.mean_cov(summaries)
    foms = fom_from_cov(cov.double().numpy()) / np.prod(compressor.theta_std)
    np.testing.assert_allclose(np.sort(foms), np.sort(record["fom_fiducial_all"]), rtol=1e-5)
    assert not [p for p in root.tmp_root.rglob("*") if p.is_file()]


def test_the_field_split_is_used_when_there_is_one(root: DataRoot) -> None:
    """Same sims in each set as the field compressor: its split.json, else the same split."""
    arrays, _ = read_npz(root.band_powers_path(LMAX, NOISE), ARRAYS, what="band powers")
    made = make_split(
        arrays["sim_id"],
        SPLIT,
        realization=arrays["noise_realization"],
        fiducial_sim_id=FIDUCIAL_SIM_ID,
    )
    record = _report(root, compressor_epochs=2)
    assert record["split_sha256"] == made.sha256()
    # the field compressor's split (another seed: other sims in each set) takes precedence
    other = make_split(
        arrays["sim_id"],
        SplitSpec(fractions=SPLIT.fractions, seed=7),
        realization=arrays["noise_realization"],
        fiducial_sim_id=FIDUCIAL_SIM_ID,
    )
    assert other.sims(arrays["sim_id"]) != made.sims(arrays["sim_id"])
    save_split(other, root.compressor(LMAX, NOISE).split)
    record = _report(root, compressor_epochs=2)
    assert record["split_sha256"] == load_split(root.compressor(LMAX, NOISE).split).sha256()
    assert record["n_sims"] == {k: len(v) for k, v in other.sims(arrays["sim_id"]).items()}


def test_training_uses_every_noise_realization(
    root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MLP trains on every realisation of its tiles; the NPE draws one per tile and epoch."""
    seen: dict[str, Any] = {}
    fit_cl, fit_npe = power_spectrum.fit_cl_compressor, npe_module.fit_npe

    def spy_cl(features: Any, theta: Any, train_rows: Any, val_rows: Any, **kw: Any) -> Any:
        seen["cl_train"], seen["cl_val"] = np.asarray(train_rows), np.asarray(val_rows)
        return fit_cl(features, theta, train_rows, val_rows, **kw)

    def spy_npe(make_batch: Any, val_data: Any, cfg: Any, **kw: Any) -> Any:
        summaries, _ = make_batch(torch.zeros(400, dtype=torch.int64), torch.Generator())
        seen["draws"] = len(torch.unique(summaries, dim=0))
        return fit_npe(make_batch, val_data, cfg, **kw)

    monkeypatch.setattr(power_spectrum, "fit_cl_compressor", spy_cl)
    monkeypatch.setattr(npe_module, "fit_npe", spy_npe)
    _report(root, compressor_epochs=2)
    arrays, _ = read_npz(root.band_powers_path(LMAX, NOISE), ARRAYS, what="band powers")
    real = arrays["noise_realization"]
    np.testing.assert_array_equal(np.bincount(real[seen["cl_train"]]), [3 * 12] * N_REAL)
    assert set(real[seen["cl_val"]].tolist()) == {0}  # validation: realisation 0
    assert seen["draws"] == N_REAL  # one tile, 400 draws: its 4 realisations


def test_missing_stale_and_bad_band_powers_are_named(root: DataRoot) -> None:
    path = root.band_powers_path(LMAX, NOISE)
    arrays, meta = read_npz(path, ARRAYS, what="band powers")
    with pytest.raises(InputMissingError, match=r"lmax_400_des_y3: no tile shards"):
        cl_fom_report(root, 400, NOISE, NPE_TINY, device="cpu")
    path.rename(path.with_suffix(".away"))
    with pytest.raises(
        InputMissingError, match=r"lmax_200_des_y3 are missing.*--select band_powers"
    ):
        cl_fom_report(root, LMAX, NOISE, NPE_TINY, device="cpu")
    stale = {**meta, "shards_content_hash": "0" * 64}
    write_npz(path, arrays, stale, tmp_root=root.tmp_root)
    with pytest.raises(ValueError, match=r"lmax_200_des_y3: .*band_powers.npz was computed from"):
        cl_fom_report(root, LMAX, NOISE, NPE_TINY, device="cpu")
    bad = dict(arrays)
    bad["band_powers"] = arrays["band_powers"].copy()
    bad["band_powers"][60, 2, 3] = np.nan
    write_npz(path, bad, meta, tmp_root=root.tmp_root)
    with pytest.raises(ValueError, match=r"non-finite band powers in 1 rows \(first row 60, sim"):
        cl_fom_report(root, LMAX, NOISE, NPE_TINY, device="cpu")
    assert not root.cl_fom_result_path(LMAX, NOISE).exists()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"lmax_200_des_y3: .*band_powers.npz"):
        cl_fom_report(root, LMAX, NOISE, NPE_TINY, device="cpu")


def test_too_few_sims_is_named(root: DataRoot) -> None:
    path = root.band_powers_path(LMAX, NOISE)
    arrays, meta = read_npz(path, ARRAYS, what="band powers")
    keep = np.isin(arrays["sim_id"], (3, 7, FIDUCIAL_SIM_ID))
    few = {k: (v if k == "edges" else v[keep]) for k, v in arrays.items()}
    write_npz(path, few, meta, tmp_root=root.tmp_root)
    with pytest.raises(ValueError, match=r"lmax_200_des_y3 \(.*band_powers.npz\)"):
        cl_fom_report(root, LMAX, NOISE, NPE_TINY, device="cpu")
    assert not root.cl_fom_result_path(LMAX, NOISE).exists()
