"""Tests of lensing_core.dataset.splits and .normalization: the 70/25/5 split and its statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lensing_core.dataset.normalization import (
    NormStats,
    compute_norm_stats,
    denormalize_theta,
    load_norm_stats,
    normalize_theta,
    normalize_tiles,
    save_norm_stats,
)
from lensing_core.dataset.splits import (
    Split,
    load_split,
    make_split,
    min_tiles_for,
    save_split,
)
from lensing_core.io import InputMissingError
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID

TILES_PER_SIM = 12


def sim_ids_of(n_sims: int, *, fiducial: bool = True) -> np.ndarray:
    """Per-row sim ids in shard order: 12 tiles per sim, sim 109 among them."""
    others = np.setdiff1d(np.arange(1, n_sims + 2), [FIDUCIAL_SIM_ID])
    sims = np.sort(np.r_[others[: n_sims - 1], FIDUCIAL_SIM_ID]) if fiducial else others[:n_sims]
    return np.repeat(sims, TILES_PER_SIM)


@pytest.mark.parametrize("n_sims", [2, 5, 13, 50, 791])
def test_split_sizes_disjoint_and_fiducial_apart(n_sims: int) -> None:
    sim_ids = sim_ids_of(n_sims)
    split = make_split(sim_ids)
    pool = np.flatnonzero(sim_ids != FIDUCIAL_SIM_ID)
    parts = [split.compressor_train, split.npe_train, split.test]
    every = np.concatenate(parts)
    assert len(np.unique(every)) == len(every) == len(pool)
    np.testing.assert_array_equal(np.sort(every), pool)
    for part, fraction in zip(parts, (0.70, 0.25, 0.05), strict=True):
        assert abs(len(part) - fraction * len(pool)) <= 1
        assert not np.any(sim_ids[part] == FIDUCIAL_SIM_ID)
        assert np.all(np.diff(part) > 0)
    np.testing.assert_array_equal(split.fiducial, np.flatnonzero(sim_ids == FIDUCIAL_SIM_ID))
    assert len(split.fiducial) == TILES_PER_SIM
    assert split.sizes()["fiducial"] == TILES_PER_SIM


def test_split_deterministic_and_seeded() -> None:
    sim_ids = sim_ids_of(20)
    first, again = make_split(sim_ids), make_split(sim_ids.copy())
    assert first == again
    for name in ("compressor_train", "npe_train", "test", "fiducial"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = make_split(sim_ids, seed=7)
    assert not np.array_equal(first.compressor_train, other.compressor_train)
    # tile level: a sim's tiles are spread over the splits, not kept together
    assert len(np.unique(sim_ids[first.test])) > 1


def test_split_arrays_are_read_only() -> None:
    split = make_split(sim_ids_of(5))
    with pytest.raises(ValueError, match=r"read-only"):
        split.test[0] = 0


def test_too_few_tiles_names_count_and_minimum() -> None:
    n_min = min_tiles_for()
    sim_ids = np.r_[np.ones(n_min - 1, dtype=int), np.full(12, FIDUCIAL_SIM_ID)]
    with pytest.raises(ValueError, match=rf"{n_min - 1} tiles outside .* need at least {n_min}"):
        make_split(sim_ids)
    split = make_split(np.r_[np.ones(n_min, dtype=int), np.full(12, FIDUCIAL_SIM_ID)])
    assert min(len(split.compressor_train), len(split.npe_train), len(split.test)) == 1


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.0), (0.7, 0.2, 0.2), (0.5, 0.5)])
def test_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"fractions"):
        make_split(sim_ids_of(5), fractions=fractions)  # type: ignore[arg-type]


def test_split_json_round_trip(tmp_path) -> None:
    split = make_split(sim_ids_of(13))
    path = save_split(split, tmp_path / "split.json", tmp_root=tmp_path / ".tmp")
    assert load_split(path) == split
    assert list((tmp_path / ".tmp").iterdir()) == []
    split.check_rows(sim_ids_of(13))


def test_split_refuses_another_table() -> None:
    split = make_split(sim_ids_of(13))
    with pytest.raises(ValueError, match=r"made for 156 rows, but the table has 144"):
        split.check_rows(sim_ids_of(12))
    with pytest.raises(ValueError, match=r"fingerprint"):
        split.check_rows(sim_ids_of(13)[::-1])


def test_load_split_errors(tmp_path) -> None:
    with pytest.raises(InputMissingError, match=r"missing.json"):
        load_split(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "n_rows"')
    with pytest.raises(ValueError, match=r"bad.json"):
        load_split(bad)
    record = make_split(sim_ids_of(5)).to_dict()
    record["test"] = record["test"] + record["npe_train"][:1]
    bad.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"bad.json.*overlap"):
        load_split(bad)


# --- normalisation statistics: from the compressor-train split only ---------------------------


def toy_arrays(n_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    scale = np.array([1.0, 2.0, 3.0, 4.0])[None, :, None, None]
    tiles = rng.standard_normal((n_rows, 4, 8, 8)) * scale + 5
    theta = rng.uniform([0.2, 0.6], [0.4, 0.9], (n_rows, 2))
    return tiles.astype(np.float32), theta


def test_norm_stats_match_numpy_and_chunking() -> None:
    rng = np.random.default_rng(1)
    tiles, theta = toy_arrays(60, rng)
    rows = np.arange(3, 50, 2)
    stats = compute_norm_stats(tiles, theta, rows, chunk_size=7)
    sub = tiles[rows].astype(np.float64)
    np.testing.assert_allclose(stats.tile_mean, sub.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats.tile_std, sub.std(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats.theta_mean, theta[rows].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.theta_std, theta[rows].std(axis=0), rtol=1e-12)
    whole = compute_norm_stats(tiles, theta, rows, chunk_size=1000)
    np.testing.assert_allclose(whole.tile_std, stats.tile_std, rtol=1e-6)
    assert stats.n_tiles == len(rows)
    assert stats.n_bins == 4
    assert stats.n_params == 2


def test_norm_stats_only_from_the_given_split() -> None:
    rng = np.random.default_rng(2)
    sim_ids = sim_ids_of(5)
    tiles, theta = toy_arrays(len(sim_ids), rng)
    split = make_split(sim_ids)
    reference = compute_norm_stats(tiles, theta, split.compressor_train)
    for outside in (split.npe_train[0], split.test[0], split.fiducial[0]):
        changed_tiles, changed_theta = tiles.copy(), theta.copy()
        changed_tiles[outside] += 100.0
        changed_theta[outside] *= 3.0
        again = compute_norm_stats(changed_tiles, changed_theta, split.compressor_train)
        assert again == reference
    inside = split.compressor_train[0]
    changed_tiles, changed_theta = tiles.copy(), theta.copy()
    changed_tiles[inside, 2] += 100.0
    assert compute_norm_stats(changed_tiles, theta, split.compressor_train) != reference
    changed_theta[inside, 1] *= 3.0
    assert compute_norm_stats(tiles, changed_theta, split.compressor_train) != reference


def test_norm_stats_json_round_trip_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(3)
    tiles, theta = toy_arrays(20, rng)
    stats = compute_norm_stats(tiles, theta, np.arange(10))
    path = save_norm_stats(stats, tmp_path / "norm_stats.json")
    assert load_norm_stats(path) == stats
    np.testing.assert_array_equal(load_norm_stats(path).tile_std, stats.tile_std)
    record = stats.to_dict()
    record["tile_std"] = record["tile_std"][:3]
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"norm_stats.json .*tile_mean \(4,\) and tile_std \(3,\)"):
        load_norm_stats(path)
    with pytest.raises(InputMissingError, match=r"nothing.json"):
        load_norm_stats(tmp_path / "nothing.json")
    with pytest.raises(ValueError, match=r"tile_std must be > 0"):
        NormStats([0, 0], [1, 0], [0.3, 0.8], [0.1, 0.1])
    with pytest.raises(ValueError, match=r"zero tiles"):
        compute_norm_stats(tiles, theta, [])


def test_normalize_and_denormalize_numpy_and_torch() -> None:
    rng = np.random.default_rng(4)
    tiles, theta = toy_arrays(30, rng)
    stats = compute_norm_stats(tiles, theta, np.arange(30))
    norm = normalize_tiles(tiles, stats)
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(norm.std(axis=(0, 2, 3)), 1, atol=1e-5)
    norm_t = normalize_tiles(torch.from_numpy(tiles), stats)
    assert norm_t.dtype == torch.float32
    np.testing.assert_allclose(norm_t.numpy(), norm, atol=1e-6)
    theta_n = normalize_theta(theta, stats)
    np.testing.assert_allclose(theta_n.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(denormalize_theta(theta_n, stats), theta, rtol=1e-12)
    back = denormalize_theta(normalize_theta(torch.from_numpy(theta), stats), stats)
    np.testing.assert_allclose(back.numpy(), theta, rtol=1e-12)
    with pytest.raises(ValueError, match=r"expected tiles \(\.\.\., 4, n_pix, n_pix\)"):
        normalize_tiles(tiles[:, :3], stats)
    with pytest.raises(ValueError, match=r"expected theta \(\.\.\., 2\)"):
        normalize_theta(theta[:, :1], stats)


def test_split_repr_is_short() -> None:
    text = repr(make_split(sim_ids_of(791)))
    assert len(text) < 200
    assert isinstance(make_split(sim_ids_of(5)), Split)
