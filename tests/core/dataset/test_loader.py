"""Tests of lensing_core.dataset.loader: exact round trips, batching, errors, no row loops."""

from __future__ import annotations

import pickle
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from lensing_core.dataset.loader import (
    RealizationBatchSampler,
    TileDataset,
    TileTable,
    _collect,
    iter_batches,
    load_tiles,
    realization_rows,
    tile_dataloader,
)
from lensing_core.dataset.schema import PARAM_COLUMNS
from tests.fixtures.shards import nested

N_BINS, N_PIX = 4, 8


def shard_table(kappa: pa.Array, first_sim: int, rng: np.random.Generator) -> pa.Table:
    rows = len(kappa)
    return pa.table(
        {
            "kappa": kappa,
            "sim_id": np.arange(first_sim, first_sim + rows),
            "noise_realization": np.zeros(rows, np.int32),
            "orientation_id": np.arange(rows) % 3,
            "tile_id": np.arange(rows) % 4,
            "lmax": np.full(rows, 600),
            "noise_level": ["des_y3"] * rows,
            **{p: rng.random(rows) for p in PARAM_COLUMNS},
        }
    )


def write_shards(
    root: Path,
    rows: list[int],
    rng: np.random.Generator,
    *,
    layout: str = "fixed",
    row_group_size: int = 3,
    n_pix: int = N_PIX,
) -> dict[str, np.ndarray]:
    """Shards ``train-0000k-of-...`` with the given row counts; returns what was written."""
    root.mkdir(parents=True, exist_ok=True)
    kappas, tables = [], []
    for k, n in enumerate(rows):
        kappa = rng.standard_normal((n, N_BINS, n_pix, n_pix), dtype=np.float32)
        table = shard_table(nested(kappa.ravel(), kappa.shape[1:], layout), sum(rows[:k]), rng)
        pq.write_table(table, root / f"train-{k:05d}-of-{len(rows):05d}.parquet", row_group_size)
        kappas.append(kappa)
        tables.append(table)
    table = pa.concat_tables(tables)
    return {
        "kappa": np.concatenate(kappas),
        "theta": np.column_stack([table[p].to_numpy() for p in ("Omega_m", "S8")]),
        "sim_id": table["sim_id"].to_numpy(),
    }


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8)


@pytest.fixture
def shards(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "lmax_600_des_y3"
    return root, write_shards(root, [7, 5, 11], rng)


@pytest.mark.parametrize("layout", ["fixed", "list", "large"])
@pytest.mark.parametrize("row_group_size", [2, 64])
def test_load_tiles_returns_exactly_what_was_written(
    tmp_path: Path, rng: np.random.Generator, layout: str, row_group_size: int
) -> None:
    root = tmp_path / "cfg"
    written = write_shards(root, [7, 5, 11], rng, layout=layout, row_group_size=row_group_size)
    table = load_tiles(root)
    assert table.tiles.shape == (23, N_BINS, N_PIX, N_PIX)
    assert table.tiles.dtype == np.float32
    assert table.tiles.flags.c_contiguous
    assert not table.tiles.flags.writeable
    np.testing.assert_array_equal(bits(table.tiles), bits(written["kappa"]))
    np.testing.assert_array_equal(bits(table.theta), bits(written["theta"]))
    np.testing.assert_array_equal(table.sim_id, written["sim_id"])  # shard order
    assert table.param_names == ("Omega_m", "S8")
    assert set(table.columns) == {
        "sim_id",
        "noise_realization",
        "orientation_id",
        "tile_id",
        "lmax",
        "noise_level",
    }
    assert table.columns["noise_level"].tolist() == ["des_y3"] * 23
    assert [p.name for p in table.shard_paths] == sorted(p.name for p in root.glob("*.parquet"))


def test_params_columns_dtype_and_explicit_file_list(
    shards: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, written = shards
    paths = sorted(root.glob("*.parquet"))[::-1]  # an explicit list keeps its order
    table = load_tiles(paths, params=("S8", "Omega_m"), columns=("tile_id",), theta_dtype="f4")
    n_last = 11
    np.testing.assert_array_equal(table.tiles[:n_last], written["kappa"][-n_last:])
    np.testing.assert_array_equal(
        table.theta[:n_last], written["theta"][-n_last:, ::-1].astype(np.float32)
    )
    assert table.theta.dtype == np.float32
    assert list(table.columns) == ["tile_id"]


def test_shards_written_by_datasets_with_array3d(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    kappa = rng.standard_normal((6, N_BINS, N_PIX, N_PIX), dtype=np.float32)
    features = datasets.Features(
        {
            "kappa": datasets.Array3D((N_BINS, N_PIX, N_PIX), "float32"),
            "sim_id": datasets.Value("int64"),
            "Omega_m": datasets.Value("float64"),
            "S8": datasets.Value("float64"),
        }
    )
    theta = rng.random((6, 2))
    ds = datasets.Dataset.from_dict(
        {"kappa": kappa, "sim_id": np.arange(6), "Omega_m": theta[:, 0], "S8": theta[:, 1]},
        features=features,
    )
    root = tmp_path / "cfg"
    root.mkdir()
    ds.to_parquet(root / "train-00000-of-00001.parquet")
    # with datasets imported, pyarrow reads kappa as datasets' Array3D extension type
    assert isinstance(
        pq.read_table(root / "train-00000-of-00001.parquet")["kappa"].chunk(0), pa.ExtensionArray
    )
    for cache_dir in (None, tmp_path / "cache"):
        table = load_tiles(root, columns=("sim_id",), cache_dir=cache_dir)
        np.testing.assert_array_equal(bits(table.tiles), bits(kappa))
        np.testing.assert_array_equal(table.theta, theta)


def test_single_chunk_is_a_zero_copy_view_of_the_arrow_buffer(rng: np.random.Generator) -> None:
    kappa = rng.standard_normal((5, N_BINS, N_PIX, N_PIX), dtype=np.float32)
    table = shard_table(nested(kappa.ravel(), kappa.shape[1:], "list"), 0, rng)
    leaf = table["kappa"].chunk(0).flatten().flatten().flatten()
    arrow_floats = np.frombuffer(leaf.buffers()[1], np.float32)
    tiles, _ = _collect(iter([(Path("mem"), table)]), 5, None, ("Omega_m",))
    assert np.shares_memory(tiles, arrow_floats)
    np.testing.assert_array_equal(tiles, kappa)


def test_cache_is_memory_mapped_reused_and_invalidated(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    root = tmp_path / "cfg"
    written = write_shards(root, [7, 5, 11], rng, n_pix=64)  # 1.5 MB: overheads negligible
    cache_dir = tmp_path / "cache"
    first = load_tiles(root, cache_dir=cache_dir)
    assert first.cache_path is not None
    assert sorted(cache_dir.iterdir()) == [first.cache_path]  # no scratch files left
    built = first.cache_path.stat().st_mtime_ns
    np.testing.assert_array_equal(bits(first.tiles), bits(written["kappa"]))
    np.testing.assert_array_equal(bits(first.theta), bits(written["theta"]))

    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    again = load_tiles(root, cache_dir=cache_dir)
    numpy_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a memory map: neither numpy nor Arrow's pool holds a copy of the tiles
    assert numpy_peak < again.tiles.nbytes / 4
    assert pa.total_allocated_bytes() - arrow_before < again.tiles.nbytes / 4
    assert again.cache_path == first.cache_path
    assert again.cache_path.stat().st_mtime_ns == built
    np.testing.assert_array_equal(again.tiles, first.tiles)

    write_shards(root, [7, 5, 11], rng, n_pix=64)  # new content, same names
    changed = load_tiles(root, cache_dir=cache_dir)
    assert changed.cache_path != first.cache_path
    assert not np.array_equal(changed.tiles, first.tiles)


def test_table_pickles_by_reopening(
    shards: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, _ = shards
    table = load_tiles(root, cache_dir=tmp_path / "cache", theta_dtype=np.float32)
    payload = pickle.dumps(table)
    assert len(payload) < table.tiles.nbytes / 4
    clone = pickle.loads(payload)
    np.testing.assert_array_equal(clone.tiles, table.tiles)
    assert clone.theta.dtype == np.float32
    assert clone.cache_path == table.cache_path


def test_iter_batches_in_order(shards: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, written = shards
    table = load_tiles(root)
    batches = list(iter_batches(table, 10))
    assert [len(b.tiles) for b in batches] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate([b.tiles for b in batches]), written["kappa"])
    np.testing.assert_array_equal(np.concatenate([b.theta for b in batches]), written["theta"])
    assert [len(b.tiles) for b in iter_batches(table, 10, drop_last=True)] == [10, 10]


def _epoch_rows(table: TileTable, **kwargs: object) -> list[np.ndarray]:
    """Rows of each batch, recovered from theta (unique per row)."""
    row_of = {tuple(t): i for i, t in enumerate(table.theta)}
    out = []
    for batch in iter_batches(table, 6, **kwargs):
        rows = np.array([row_of[tuple(t)] for t in np.asarray(batch.theta)])
        np.testing.assert_array_equal(np.asarray(batch.tiles), table.tiles[rows])
        out.append(rows)
    return out


def test_shuffled_batches_cover_each_row_once_and_are_seeded(
    shards: tuple[Path, dict[str, np.ndarray]],
) -> None:
    table = load_tiles(shards[0])
    epoch = _epoch_rows(table, shuffle=True, rng=np.random.default_rng(5))
    flat = np.concatenate(epoch)
    np.testing.assert_array_equal(np.sort(flat), np.arange(len(table)))
    assert not np.array_equal(flat, np.arange(len(table)))
    same = np.concatenate(_epoch_rows(table, shuffle=True, rng=np.random.default_rng(5)))
    other = np.concatenate(_epoch_rows(table, shuffle=True, rng=np.random.default_rng(6)))
    np.testing.assert_array_equal(same, flat)
    assert not np.array_equal(other, flat)

    split = np.array([3, 4, 9, 10, 11, 20, 22])
    rows = np.concatenate(
        _epoch_rows(table, indices=split, shuffle=True, rng=np.random.default_rng(0))
    )
    np.testing.assert_array_equal(np.sort(rows), split)


def test_shuffle_needs_rng_and_indices_are_checked(
    shards: tuple[Path, dict[str, np.ndarray]],
) -> None:
    table = load_tiles(shards[0])
    with pytest.raises(ValueError, match="rng"):
        next(iter_batches(table, 4, shuffle=True))
    with pytest.raises(ValueError, match=r"\[0, 23\)"):
        next(iter_batches(table, 4, indices=[0, 23]))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(table, 0))


def test_torch_batches_and_dataset(shards: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, written = shards
    table = load_tiles(root, theta_dtype=np.float32)
    batch = next(iter_batches(table, 8, as_torch=True))
    assert isinstance(batch.tiles, torch.Tensor)
    assert batch.tiles.dtype == torch.float32
    assert batch.theta.dtype == torch.float32
    assert tuple(batch.tiles.shape) == (8, N_BINS, N_PIX, N_PIX)
    assert tuple(batch.theta.shape) == (8, 2)
    np.testing.assert_array_equal(batch.tiles.numpy(), written["kappa"][:8])

    split = np.array([1, 2, 5, 8, 13, 17, 21])
    ds = TileDataset(table, split)
    assert len(ds) == 7
    tile, theta = ds[2]
    np.testing.assert_array_equal(tile.numpy(), written["kappa"][5])
    assert tuple(theta.shape) == (2,)
    tiles, _ = ds[[0, 6]]
    np.testing.assert_array_equal(tiles.numpy(), written["kappa"][[1, 21]])
    tiles, _ = ds.__getitems__([6, 0])
    np.testing.assert_array_equal(tiles.numpy(), written["kappa"][[21, 1]])

    def epoch(seed: int) -> np.ndarray:
        loader = tile_dataloader(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        batches = list(loader)
        assert [len(b.tiles) for b in batches] == [3, 3, 1]
        tiles = np.concatenate([b.tiles.numpy() for b in batches])
        return np.array(
            [np.flatnonzero((written["kappa"] == t).all(axis=(1, 2, 3)))[0] for t in tiles]
        )

    rows = epoch(0)
    np.testing.assert_array_equal(np.sort(rows), split)
    np.testing.assert_array_equal(epoch(0), rows)
    with pytest.raises(ValueError, match="Generator"):
        tile_dataloader(ds, 3, shuffle=True)


def test_missing_or_empty_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "lmax_600_des_y3"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_tiles(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".train-00000.parquet.tmp").write_bytes(b"half written")
    with pytest.raises(FileNotFoundError, match=re.escape(str(empty))):
        load_tiles(empty)
    with pytest.raises(FileNotFoundError, match=re.escape("missing.parquet")):
        load_tiles([tmp_path / "missing.parquet"])


def _bad_kappa_shards(rng: np.random.Generator) -> dict[str, pa.Array]:
    flat = rng.standard_normal(3 * N_BINS * N_PIX * N_PIX, dtype=np.float32)
    good = nested(flat, (N_BINS, N_PIX, N_PIX), "list")
    # the last row has one pixel row too few
    short = pa.ListArray.from_arrays(
        pa.array([0, N_BINS, 2 * N_BINS, 3 * N_BINS - 1], pa.int32()), good.values
    )
    # inner lists of N_PIX - 1 and N_PIX + 1 values: right total, wrong layout
    n_inner = 3 * N_BINS * N_PIX
    lengths = np.where(np.arange(n_inner) % 2 == 0, N_PIX - 1, N_PIX + 1)
    inner = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)), flat)
    middle = pa.ListArray.from_arrays(
        pa.array(np.arange(3 * N_BINS + 1, dtype=np.int32) * N_PIX), inner
    )
    ragged = pa.ListArray.from_arrays(pa.array(np.arange(4, dtype=np.int32) * N_BINS), middle)
    return {
        "irregular": short,
        "ragged": ragged,
        "float64": nested(flat.astype(np.float64), (N_BINS, N_PIX, N_PIX), "list"),
        "two_levels": nested(flat, (N_BINS, N_PIX * N_PIX), "list"),
        "not_square": nested(flat, (N_BINS, 2 * N_PIX, N_PIX // 2), "fixed"),
        "other_n": nested(flat[: 3 * N_BINS * 16], (N_BINS, 4, 4), "fixed"),
        "nulls": pa.array([good[0].as_py(), None, good[2].as_py()], good.type),
    }


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("irregular", ValueError, "irregular lengths"),
        ("ragged", ValueError, "irregular lengths"),
        ("float64", TypeError, "float32"),
        ("two_levels", ValueError, "shape"),
        ("not_square", ValueError, "shape"),
        ("other_n", ValueError, r"expected \(4, 8, 8\)"),
        ("nulls", ValueError, "null"),
    ],
)
def test_malformed_shard_names_the_file(
    shards: tuple[Path, dict[str, np.ndarray]],
    rng: np.random.Generator,
    case: str,
    error: type[Exception],
    match: str,
) -> None:
    root, _ = shards
    kappa = _bad_kappa_shards(rng)[case]
    bad = root / "train-00009-of-00009.parquet"
    pq.write_table(shard_table(kappa, 100, rng), bad)
    with pytest.raises(error, match=match) as info:
        load_tiles(root)
    assert str(bad) in str(info.value)


def test_unreadable_shard_or_missing_column_names_the_file(
    shards: tuple[Path, dict[str, np.ndarray]], rng: np.random.Generator
) -> None:
    root, _ = shards
    bad = root / "train-00009-of-00009.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_tiles(root)
    kappa = nested(
        rng.standard_normal(N_BINS * N_PIX * N_PIX, dtype=np.float32),
        (N_BINS, N_PIX, N_PIX),
        "list",
    )
    pq.write_table(shard_table(kappa, 100, rng).drop_columns(["S8"]), bad)
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}.*S8"):
        load_tiles(root)
    with pytest.raises(ValueError, match="expected"):
        load_tiles(sorted(root.glob("*"))[:1], tile_shape=(4, 16, 16))


def test_ten_thousand_tiny_rows_load_without_a_row_loop(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    n = 10_000
    kappa = rng.standard_normal((n, N_BINS, 2, 2), dtype=np.float32)
    root = tmp_path / "tiny"
    root.mkdir()
    table = shard_table(nested(kappa.ravel(), kappa.shape[1:], "list"), 0, rng)
    pq.write_table(table, root / "train-00000-of-00001.parquet", row_group_size=1000)
    start = time.perf_counter()
    loaded = load_tiles(root)
    n_batches = sum(1 for _ in iter_batches(loaded, 64, shuffle=True, rng=rng))
    assert time.perf_counter() - start < 0.5
    assert n_batches == -(-n // 64)
    np.testing.assert_array_equal(loaded.tiles, kappa)


# --- noise realisations: one per tile and epoch ------------------------------------------------


def realization_table(n_sims: int, n_real: int) -> TileTable:
    """A table in shard order (sim, realisation, orientation, tile), R realisations per tile."""
    rows = n_sims * n_real * 12
    tile = np.arange(rows) % 12
    columns = {
        "sim_id": np.repeat(np.arange(n_sims), n_real * 12),
        "noise_realization": np.arange(rows) // 12 % n_real,
        "orientation_id": tile // 4,
        "tile_id": tile % 4,
    }
    tiles = np.zeros((rows, 1, 2, 2), np.float32)
    return TileTable(tiles, np.zeros((rows, 2)), ("Omega_m", "S8"), columns, ())


def test_realization_rows_groups_the_realizations_of_each_tile() -> None:
    table = realization_table(3, 4)
    base = np.flatnonzero(table.columns["noise_realization"] == 0)
    groups = realization_rows(table, base)
    assert groups.shape == (36, 4)
    cols = table.columns
    for key in ("sim_id", "orientation_id", "tile_id"):
        assert np.all(cols[key][groups] == cols[key][groups[:, :1]])  # one tile per line
    np.testing.assert_array_equal(cols["noise_realization"][groups], np.tile(np.arange(4), (36, 1)))
    # any realisation's row finds the same line
    np.testing.assert_array_equal(realization_rows(table, groups[:, 2]), groups)
    bad = realization_table(2, 2)
    bad.columns["noise_realization"][0] = 1  # tile 0 of sim 0: realisation 1 twice
    with pytest.raises(ValueError, match="realisations"):
        realization_rows(bad, [0])


def test_sampler_draws_one_realization_per_tile_and_epoch() -> None:
    table = realization_table(4, 4)
    groups = realization_rows(table, np.flatnonzero(table.columns["noise_realization"] == 0))
    sampler = RealizationBatchSampler(groups, 10, generator=torch.Generator().manual_seed(0))
    assert len(sampler) == 5  # 48 tiles in batches of 10
    tile_of = {int(r): i for i, line in enumerate(groups) for r in line}
    used = np.zeros(groups.shape, int)
    for _ in range(40):
        rows = [r for batch in sampler for r in batch]
        tiles = [tile_of[r] for r in rows]
        assert sorted(tiles) == list(range(48))  # every tile once per epoch
        for r in rows:
            used[tile_of[r], table.columns["noise_realization"][r]] += 1
    # each tile met several of its realisations; overall the draw is uniform
    assert np.all((used > 0).sum(axis=1) >= 2)
    shares = used.sum(axis=0) / used.sum()
    np.testing.assert_allclose(shares, 0.25, atol=0.03)
    dropped = RealizationBatchSampler(
        groups, 10, generator=torch.Generator().manual_seed(0), drop_last=True
    )
    assert [len(b) for b in dropped] == [10] * 4


def test_sampler_with_one_realization_is_the_random_sampler() -> None:
    """R = 1 gives exactly ``BatchSampler(RandomSampler(generator))``: old runs replay."""
    rows = np.arange(0, 60, 2)
    sampler = RealizationBatchSampler(rows[:, None], 7, generator=torch.Generator().manual_seed(3))
    reference = BatchSampler(
        RandomSampler(range(len(rows)), generator=torch.Generator().manual_seed(3)), 7, False
    )
    for _ in range(3):
        expected = [[int(rows[i]) for i in batch] for batch in reference]
        assert len(expected) == 5
        assert list(sampler) == expected
