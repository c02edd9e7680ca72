"""Tests of lensing_core.dataset.splits and .normalization: splits by sim or tile, statistics."""

from __future__ import annotations

import itertools
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
    DEFAULT_SIM_FRACTIONS,
    SET_NAMES,
    TILE_FRACTIONS,
    Split,
    SplitSpec,
    load_split,
    make_split,
    min_units_for,
    save_split,
)
from lensing_core.io import InputMissingError
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, is_fiducial

TILES_PER_SIM = 12
TILE_SETS = ("compressor_train", "npe_train", "test")


def sim_ids_of(n_sims: int, *, fiducial: bool = True) -> np.ndarray:
    """Per-row sim ids in shard order: 12 tiles per sim, sim 109 among them."""
    others = np.setdiff1d(np.arange(1, n_sims + 2), [FIDUCIAL_SIM_ID])
    sims = np.sort(np.r_[others[: n_sims - 1], FIDUCIAL_SIM_ID]) if fiducial else others[:n_sims]
    return np.repeat(sims, TILES_PER_SIM)


def with_realizations(n_sims: int, n_real: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row sim ids and noise realisations in shard order (sim, realisation, tile)."""
    sims = np.unique(sim_ids_of(n_sims))
    sim_ids = np.repeat(sims, n_real * TILES_PER_SIM)
    realization = np.tile(np.repeat(np.arange(n_real), TILES_PER_SIM), len(sims))
    return sim_ids, realization


@pytest.mark.parametrize("n_sims", [13, 20, 50, 791])
def test_sim_split_keeps_every_sim_in_one_set(n_sims: int) -> None:
    """The default split: whole sims per set, sizes by fraction, every tile once, fiducial apart."""
    sim_ids = sim_ids_of(n_sims)
    split = make_split(sim_ids)
    assert split.kind == "sim"
    assert split.fractions == DEFAULT_SIM_FRACTIONS
    sims = split.sims(sim_ids)
    for a, b in itertools.combinations(SET_NAMES, 2):
        assert not set(sims[a]) & set(sims[b]), f"{a} and {b} share sims"
    pool = np.flatnonzero(sim_ids != FIDUCIAL_SIM_ID)
    every = np.concatenate([getattr(split, name) for name in SET_NAMES])
    np.testing.assert_array_equal(np.sort(every), pool)
    n_pool = len(np.unique(sim_ids[pool]))
    for name, fraction in zip(SET_NAMES, DEFAULT_SIM_FRACTIONS, strict=True):
        part = getattr(split, name)
        assert len(sims[name]) >= 1
        assert abs(len(sims[name]) - fraction * n_pool) <= 2  # the last set takes the rest
        assert len(part) == TILES_PER_SIM * len(sims[name])  # every tile of its sims
        assert FIDUCIAL_SIM_ID not in sims[name]
        assert np.all(np.diff(part) > 0)
    np.testing.assert_array_equal(split.fiducial, np.flatnonzero(sim_ids == FIDUCIAL_SIM_ID))
    assert split.sizes()["fiducial"] == TILES_PER_SIM


def test_fiducial_realizations_are_held_out_of_every_set() -> None:
    """Sim 109's other realizations and the prior-centre ones go to the fiducial set only."""
    realizations = (10001, 10002, 10003, 20001, 20002, 20003, 20004)
    sim_ids = np.sort(np.r_[sim_ids_of(40), np.repeat(realizations, TILES_PER_SIM)])
    for spec in (SplitSpec(), SplitSpec(kind="tile")):
        split = make_split(sim_ids, spec)
        sims = split.sims(sim_ids)
        assert sims["fiducial"] == [FIDUCIAL_SIM_ID, *realizations]
        for name in SET_NAMES:
            assert not set(sims[name]) & {FIDUCIAL_SIM_ID, *realizations}, name
        assert len(split.fiducial) == TILES_PER_SIM * 8
    assert is_fiducial([109, 110, 10000, 10001, 19999, 20000, 20005, 30000]).tolist() == [
        True,
        False,
        False,
        True,
        True,
        False,
        True,
        False,
    ]


def test_sim_split_lists_realization_zero_and_keeps_realizations_together() -> None:
    """With R noise realisations a split lists one row per tile: realisation 0's."""
    sim_ids, realization = with_realizations(20, 4)
    split = make_split(sim_ids, realization=realization)
    plain = make_split(sim_ids_of(20))
    for name in (*SET_NAMES, "fiducial"):
        rows = getattr(split, name)
        assert np.all(realization[rows] == 0)
        # the same sims as without realisations: the split is of sims, not of rows
        np.testing.assert_array_equal(np.unique(sim_ids[rows]), plain.sims(sim_ids_of(20))[name])
    split.check_rows(sim_ids)


def test_tile_split_is_the_seed_split_with_its_validation_sets() -> None:
    """``tile``: the old 70/25/5 split of tiles; validation sets are NPE-train and test."""
    sim_ids = sim_ids_of(20)
    split = make_split(sim_ids, SplitSpec("tile"))
    pool = np.flatnonzero(sim_ids != FIDUCIAL_SIM_ID)
    parts = [getattr(split, name) for name in TILE_SETS]
    every = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(every), pool)
    for part, fraction in zip(parts, TILE_FRACTIONS, strict=True):
        assert abs(len(part) - fraction * len(pool)) <= 1
    np.testing.assert_array_equal(split.compressor_val, split.npe_train)
    np.testing.assert_array_equal(split.npe_val, split.test)
    # the leak the default split removes: sims with tiles in training and in test
    assert set(sim_ids[split.test]) & set(sim_ids[split.compressor_train])
    # the permutation of the earlier pipeline, unchanged
    order = np.random.default_rng(42).permutation(pool)
    n_train, n_npe = round(0.7 * len(pool)), round(0.25 * len(pool))
    np.testing.assert_array_equal(split.compressor_train, np.sort(order[:n_train]))
    np.testing.assert_array_equal(split.test, np.sort(order[n_train + n_npe :]))


def test_split_deterministic_and_seeded() -> None:
    sim_ids = sim_ids_of(20)
    first, again = make_split(sim_ids), make_split(sim_ids.copy())
    assert first == again
    for name in (*SET_NAMES, "fiducial"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = make_split(sim_ids, SplitSpec(seed=7))
    assert first.sims(sim_ids)["compressor_train"] != other.sims(sim_ids)["compressor_train"]


def test_split_arrays_are_read_only() -> None:
    split = make_split(sim_ids_of(14))
    with pytest.raises(ValueError, match=r"read-only"):
        split.test[0] = 0


def test_too_few_sims_names_count_and_minimum() -> None:
    n_min = min_units_for()
    sim_ids = sim_ids_of(n_min)  # n_min - 1 sims besides the fiducial
    with pytest.raises(ValueError, match=rf"{n_min - 1} sims outside .* need at least {n_min}"):
        make_split(sim_ids)
    split = make_split(sim_ids_of(n_min + 1))
    assert min(len(split.sims(sim_ids_of(n_min + 1))[name]) for name in SET_NAMES) == 1
    n_tiles = min_units_for(SplitSpec("tile"))
    few = np.r_[np.ones(n_tiles - 1, dtype=int), np.full(12, FIDUCIAL_SIM_ID)]
    with pytest.raises(ValueError, match=rf"{n_tiles - 1} tiles outside"):
        make_split(few, SplitSpec("tile"))


@pytest.mark.parametrize(
    ("kind", "fractions"),
    [
        ("sim", (0.5, 0.5, 0.0, 0.0, 0.0)),
        ("sim", (0.7, 0.2, 0.1)),
        ("tile", (0.7, 0.2, 0.2)),
        ("tile", (0.5, 0.5)),
        ("sims", None),
    ],
)
def test_bad_spec(kind: str, fractions: tuple[float, ...] | None) -> None:
    with pytest.raises(ValueError, match=r"fractions|split kind"):
        SplitSpec(kind, fractions)


def test_split_json_round_trip(tmp_path) -> None:
    for spec in (SplitSpec(), SplitSpec("tile")):
        split = make_split(sim_ids_of(13), spec)
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
    bad.write_text('{"format": 2, "n_rows"')
    with pytest.raises(ValueError, match=r"bad.json"):
        load_split(bad)
    record = make_split(sim_ids_of(14)).to_dict()
    record["test"] = record["test"] + record["npe_train"][:1]
    bad.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"bad.json.*overlap"):
        load_split(bad)
    old = {**make_split(sim_ids_of(14)).to_dict(), "format": 1}
    bad.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"bad.json.*format 1, expected 2"):
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
    sim_ids = sim_ids_of(14)
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
    assert isinstance(make_split(sim_ids_of(14)), Split)
