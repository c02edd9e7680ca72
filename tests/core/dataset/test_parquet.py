"""Parquet shards of one configuration: rows, bounded shards, determinism, atomicity, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lensing_core import io as lensing_io
from lensing_core.dataset import parquet as shards_mod
from lensing_core.dataset.parquet import (
    ShardReport,
    hash_shards,
    read_shard_manifest,
    write_config_shards,
)
from lensing_core.dataset.schema import PARAM_COLUMNS, arrow_schema, read_kappa
from lensing_core.sims.catalog import SimCatalog
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.storage import DataRoot, ShardSet
from tests.core.dataset.conftest import LMAX, N_PIX, SIMS

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL_SHARD_BYTES = 1_000_000  # three 256 KiB rows per shard: 12 shards for 3 sims


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under *directory* (relative name -> bytes)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _staging_dirs(root: DataRoot) -> list[Path]:
    return sorted(root.tmp_root.glob("shards-*")) if root.tmp_root.exists() else []


def _fake_tiles(root: DataRoot, sim_id: int, shape: tuple[int, ...], rng: np.random.Generator):
    tiles = {noise: rng.standard_normal(shape).astype(np.float32) for noise in NOISE_LEVELS}
    return root.write_tiles(sim_id, LMAX, tiles, {"sim_id": sim_id, "lmax": LMAX})


def test_rows_columns_and_values(data_root: DataRoot, catalog: SimCatalog) -> None:
    """12 R rows per sim, in (sim, realisation, orientation, tile) order, values as in the files."""
    report = write_config_shards(data_root, catalog, LMAX, "des_y3", [*SIMS, 4])
    n_real = 4  # TilingOptions().noise_realizations
    per_sim = 12 * n_real
    assert report.out_dir == data_root.shards(LMAX, "des_y3").dir
    assert report.rows == per_sim * len(SIMS)
    assert report.sims_included == SIMS
    assert report.sims_missing == (4,)
    (skip,) = report.skipped
    assert skip.kind == "missing"
    assert skip.path == data_root.tiles_path(4, LMAX)
    assert str(skip.path) in skip.reason
    assert report.tile_provenance == {
        "scheme": ("belts",),
        "noise_convention": ("per_component",),
        "noise_realizations": (str(n_real),),
    }

    table = pq.read_table(report.shard_paths)
    assert table.schema.names == arrow_schema(LMAX).names
    assert table.schema.equals(arrow_schema(LMAX), check_metadata=False)
    kappa = read_kappa(table.column("kappa"))
    assert kappa.shape == (per_sim * len(SIMS), 4, N_PIX, N_PIX)
    assert kappa.dtype == np.float32
    for i, sim_id in enumerate(SIMS):
        stack = data_root.read_tiles(sim_id, LMAX, ("des_y3",), realizations=True)[0]["des_y3"]
        assert stack.shape == (n_real, 12, 4, N_PIX, N_PIX)
        np.testing.assert_array_equal(
            kappa[per_sim * i : per_sim * (i + 1)], stack.reshape(-1, 4, N_PIX, N_PIX)
        )
        first = data_root.read_tiles(sim_id, LMAX, ("des_y3",))[0]["des_y3"]
        np.testing.assert_array_equal(stack[0], first)  # realisation 0 is the plain array
    assert table.column("sim_id").to_pylist() == [s for s in SIMS for _ in range(per_sim)]
    assert (
        table.column("noise_realization").to_pylist()
        == [r for r in range(n_real) for _ in range(12)] * 3
    )
    orientations = [o for o in range(3) for _ in range(4)]
    assert table.column("orientation_id").to_pylist() == orientations * n_real * 3
    assert table.column("tile_id").to_pylist() == list(range(4)) * 3 * n_real * 3
    assert set(table.column("lmax").to_pylist()) == {LMAX}
    assert set(table.column("noise_level").to_pylist()) == {"des_y3"}
    for name in PARAM_COLUMNS:
        expected = [catalog[s][name] for s in SIMS for _ in range(per_sim)]
        assert table.column(name).to_pylist() == expected
    assert hash_shards(report.shard_paths, LMAX, "des_y3") == report.content_hash

    noiseless = write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS)
    assert noiseless.rows == 12 * len(SIMS)  # the signal has no realisations
    assert noiseless.tile_provenance["noise_realizations"] == ("1",)


def test_noise_realizations_are_independent_noise_on_one_signal(data_root: DataRoot) -> None:
    """Realisations differ only by noise of the level's power, independent between them."""
    by_noise, meta = data_root.read_tiles(SIMS[0], LMAX, NOISE_LEVELS, realizations=True)
    assert meta["noise_realizations"] == {"noiseless": 1, "des_y3": 4, "lsst_y10": 4}
    signal = by_noise["noiseless"][0].astype(np.float64)
    noise = by_noise["des_y3"].astype(np.float64) - signal  # (4, 12, 4, n, n)
    std = noise.std(axis=(1, 3, 4))  # (realisation, bin)
    np.testing.assert_allclose(std, np.broadcast_to(std[0], std.shape), rtol=0.05)  # same level
    flat = noise.transpose(0, 2, 1, 3, 4).reshape(4, 4, -1)  # (realisation, bin, pixels)
    for b in range(4):
        corr = np.corrcoef(flat[:, b])
        off = corr[~np.eye(4, dtype=bool)]
        assert np.abs(off).max() < 0.02, f"bin {b}: realisations correlate: {corr}"


def test_shards_refuse_tiles_of_another_number_of_realizations(
    data_root: DataRoot, catalog: SimCatalog
) -> None:
    """A sim tiled with another R than asked for is skipped, naming the sim and the file."""
    by_noise, meta = data_root.read_tiles(SIMS[0], LMAX, NOISE_LEVELS, realizations=True)
    data_root.write_tiles(SIMS[0], LMAX, {k: v[:2] for k, v in by_noise.items()}, meta)
    report = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS, noise_realizations=4)
    assert report.sims_included == SIMS[1:]
    (skip,) = report.skipped
    assert skip.kind == "invalid"
    assert f"sim {SIMS[0]}" in skip.reason
    assert str(data_root.tiles_path(SIMS[0], LMAX)) in skip.reason
    assert "noise_realizations 2, expected 4" in skip.reason


def test_tile_files_are_read_one_sim_at_a_time(
    data_root: DataRoot, catalog: SimCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the requested noise level is read, and a sim's tiles are freed before the next."""
    monkeypatch.setattr(shards_mod, "ROW_GROUP_TARGET_BYTES", 1)  # one row per row group
    read = DataRoot.read_tiles
    alive: list[weakref.ref] = []
    calls = []

    def tracking_read(
        self: DataRoot, sim_id: int, lmax: int, noise_levels: tuple[str, ...], **kwargs: object
    ):
        calls.append((sim_id, noise_levels, sum(ref() is not None for ref in alive)))
        by_noise, meta = read(self, sim_id, lmax, noise_levels, **kwargs)
        alive.extend(weakref.ref(a) for a in by_noise.values())
        return by_noise, meta

    monkeypatch.setattr(DataRoot, "read_tiles", tracking_read)
    write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS)
    assert [c[:2] for c in calls] == [(s, ("noiseless",)) for s in SIMS]
    assert max(c[2] for c in calls) <= 1  # at most the previous sim's array is still referenced


def test_rerun_gives_identical_bytes_and_hash(data_root: DataRoot, catalog: SimCatalog) -> None:
    first = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS)
    before = _snapshot(first.out_dir)
    second = write_config_shards(data_root, catalog, LMAX, "des_y3", list(reversed(SIMS)))
    assert _snapshot(second.out_dir) == before
    assert second.content_hash == first.content_hash
    assert [s.sha256 for s in second.shards] == [s.sha256 for s in first.shards]
    # the content hash does not depend on where the shard boundaries fall
    other_dir = data_root.root / "elsewhere" / "lmax_200_des_y3"
    resharded = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, out_dir=other_dir, max_shard_bytes=2_000_000
    )
    assert len(resharded.shards) != len(first.shards)
    assert resharded.content_hash == first.content_hash
    assert _staging_dirs(data_root) == []


def test_one_changed_tile_changes_the_hash(data_root: DataRoot, catalog: SimCatalog) -> None:
    first = write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS)
    by_noise, meta = data_root.read_tiles(SIMS[1], LMAX, NOISE_LEVELS)
    by_noise["noiseless"][5, 1, 10, 20] += 1e-4
    data_root.write_tiles(SIMS[1], LMAX, by_noise, meta)
    second = write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS)
    assert second.content_hash != first.content_hash
    assert second.rows == first.rows


def test_shards_are_bounded(data_root: DataRoot, catalog: SimCatalog) -> None:
    report = write_config_shards(
        data_root, catalog, LMAX, "lsst_y10", SIMS, max_shard_bytes=SMALL_SHARD_BYTES
    )
    n = len(report.shards)
    assert n > 1
    assert [s.name for s in report.shards] == [
        f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)
    ]
    assert all(p.stat().st_size <= SMALL_SHARD_BYTES for p in report.shard_paths)
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in report.shard_paths) == 36 * 4
    assert sorted(p.name for p in report.out_dir.iterdir()) == sorted(
        [s.name for s in report.shards] + [ShardSet.MANIFEST]
    )
    with pytest.raises(ValueError, match="below one row"):
        write_config_shards(data_root, catalog, LMAX, "lsst_y10", SIMS, max_shard_bytes=100_000)


def test_manifest_round_trip_and_size_check(data_root: DataRoot, catalog: SimCatalog) -> None:
    report = write_config_shards(
        data_root, catalog, LMAX, "des_y3", [*SIMS, 4], max_shard_bytes=SMALL_SHARD_BYTES
    )
    read = read_shard_manifest(report.out_dir)
    assert read.to_manifest() == report.to_manifest()
    assert read.shard_paths == report.shard_paths
    with report.shard_paths[-1].open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="bytes"):
        read_shard_manifest(report.out_dir)


class _FailingWriter(pq.ParquetWriter):
    """Raises when a row group of the second shard is written (a mid-write failure)."""

    closed = 0

    def close(self) -> None:
        super().close()
        type(self).closed += 1

    def write_table(self, table, row_group_size=None) -> None:
        if type(self).closed >= 1:
            msg = "disk full (simulated)"
            raise OSError(msg)
        super().write_table(table, row_group_size=row_group_size)


def test_failed_build_leaves_previous_set_untouched(
    data_root: DataRoot, catalog: SimCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS[:2])
    before = _snapshot(previous.out_dir)
    monkeypatch.setattr(_FailingWriter, "closed", 0)
    monkeypatch.setattr(pq, "ParquetWriter", _FailingWriter)
    with pytest.raises(OSError, match="simulated"):
        write_config_shards(
            data_root, catalog, LMAX, "des_y3", SIMS, max_shard_bytes=SMALL_SHARD_BYTES
        )
    assert _FailingWriter.closed >= 1  # it did fail after a complete first shard
    assert _snapshot(previous.out_dir) == before
    assert _staging_dirs(data_root) == []
    monkeypatch.undo()

    rerun = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, max_shard_bytes=SMALL_SHARD_BYTES
    )
    clean_root = DataRoot(data_root.root.parent / "clean")
    clean = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, out_dir=clean_root.shards(LMAX, "des_y3").dir
    )
    assert rerun.content_hash == clean.content_hash


_KILLED_RUN = """
import os, sys
from pathlib import Path
import pyarrow.parquet as pq
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.storage import DataRoot, ShardSet

class Dying(pq.ParquetWriter):
    closed = 0
    def close(self):
        super().close()
        Dying.closed += 1
        if Dying.closed == 2:  # two shards complete, the rest not: killed, no clean-up at all
            os._exit(9)

pq.ParquetWriter = Dying
sims = [int(s) for s in sys.argv[2].split(",")]
write_config_shards(DataRoot(Path(sys.argv[1])), synthetic_catalog(110), 200, "des_y3", sims,
                    max_shard_bytes=int(sys.argv[3]))
"""


def test_killed_build_leaves_only_temporaries_and_rerun_recovers(
    data_root: DataRoot, catalog: SimCatalog
) -> None:
    previous = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS[:1])
    before = _snapshot(previous.out_dir)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_RUN,
            str(data_root.root),
            ",".join(map(str, SIMS)),
            str(SMALL_SHARD_BYTES),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 9, result.stderr
    assert _snapshot(previous.out_dir) == before  # readers still see the old complete set
    (leftover,) = _staging_dirs(data_root)
    assert len(list(leftover.glob("part-*.parquet"))) >= 2

    rerun = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, max_shard_bytes=SMALL_SHARD_BYTES
    )
    assert rerun.cleaned_temporaries == (leftover.name,)
    assert _staging_dirs(data_root) == []
    uninterrupted = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, out_dir=data_root.root / "check" / "x"
    )
    assert rerun.content_hash == uninterrupted.content_hash
    assert hash_shards(rerun.shard_paths, LMAX, "des_y3") == rerun.content_hash


def test_swap_without_rename_exchange(
    data_root: DataRoot, catalog: SimCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2 exchange is unavailable, the two-rename fallback gives the same result."""
    first = write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS[:1])
    monkeypatch.setattr(lensing_io, "_rename_exchange", lambda a, b: False)
    second = write_config_shards(data_root, catalog, LMAX, "noiseless", SIMS)
    assert second.rows == 36
    assert second.content_hash != first.content_hash
    assert read_shard_manifest(second.out_dir).content_hash == second.content_hash
    assert _staging_dirs(data_root) == []


def test_bad_tile_files_are_reported_with_sim_and_file(
    data_root: DataRoot, catalog: SimCatalog, rng: np.random.Generator
) -> None:
    corrupt = data_root.tiles_path(SIMS[0], LMAX)
    corrupt.write_bytes(corrupt.read_bytes()[:5000])  # truncated
    wrong_shape = _fake_tiles(data_root, 20, (12, 4, 64, 64), rng)
    nan_tiles = {n: np.full((12, 4, N_PIX, N_PIX), np.nan, np.float32) for n in NOISE_LEVELS}
    nan_file = data_root.write_tiles(21, LMAX, nan_tiles, {})
    uncatalogued = _fake_tiles(data_root, 999, (12, 4, N_PIX, N_PIX), rng)

    report = write_config_shards(data_root, catalog, LMAX, "des_y3", [*SIMS, 20, 21, 999])
    assert report.sims_included == SIMS[1:]
    assert report.rows == 24 * 4
    by_sim = {s.sim_id: s for s in report.skipped}
    assert {sim: s.kind for sim, s in by_sim.items()} == {
        SIMS[0]: "invalid",
        20: "invalid",
        21: "invalid",
        999: "not_in_catalog",
    }
    for sim_id, path, words in [
        (SIMS[0], corrupt, "corrupt"),
        (20, wrong_shape, "shape"),
        (21, nan_file, "non-finite"),
        (999, uncatalogued, "not in the catalog"),
    ]:
        assert by_sim[sim_id].path == path
        assert str(path) in by_sim[sim_id].reason
        assert f"sim {sim_id}" in by_sim[sim_id].reason
        assert words in by_sim[sim_id].reason
    metadata = report.to_metadata()
    assert metadata["n_sims_skipped"] == 4
    assert metadata["sims_included"] == list(SIMS[1:])

    with pytest.raises(ValueError, match=str(wrong_shape)):
        write_config_shards(data_root, catalog, LMAX, "des_y3", [*SIMS[1:], 20], strict=True)
    assert _staging_dirs(data_root) == []
    assert read_shard_manifest(report.out_dir).content_hash == report.content_hash


def test_tiles_of_another_scheme_are_not_mixed_in(data_root: DataRoot, catalog: SimCatalog) -> None:
    with pytest.raises(ValueError, match="no sim has valid tiles") as err:
        write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS, scheme="legacy")
    assert "scheme 'belts', expected 'legacy'" in str(err.value)
    assert not data_root.shards(LMAX, "des_y3").dir.exists()
    report = write_config_shards(
        data_root, catalog, LMAX, "des_y3", SIMS, scheme="belts", noise_convention="per_component"
    )
    assert isinstance(report, ShardReport)
    assert report.rows == 36 * 4
    assert os.listdir(data_root.tmp_root) == []
