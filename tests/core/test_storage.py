"""Data-root files: layout, atomic writes, and checked reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lensing_core.io as lio
from lensing_core.io import InputMissingError
from lensing_core.storage import KAPPA_KEYS, DataRoot, ShardSet


def _maps(rng: np.random.Generator, nside: int = 16) -> np.ndarray:
    return rng.normal(size=(4, 12 * nside**2))


def test_layout_follows_the_spec(tmp_path: Path) -> None:
    """kappa/sim{ID:05d}.npz and tiles/lmax{L}/sim{ID:05d}.npz."""
    root = DataRoot(tmp_path)
    assert root.kappa_path(109) == tmp_path / "kappa" / "sim00109.npz"
    assert root.tiles_path(7, 600) == tmp_path / "tiles" / "lmax600" / "sim00007.npz"


def test_kappa_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    """Maps come back as written (float32) with their metadata; keys are kappa_bin0..3."""
    root = DataRoot(tmp_path)
    maps = _maps(rng)
    root.write_kappa(3, maps, {"sim_id": 3, "note": "x"})
    with np.load(root.kappa_path(3)) as npz:
        assert set(npz.files) == {*KAPPA_KEYS, "metadata"}
    back, meta = root.read_kappa(3)
    np.testing.assert_array_equal(back, maps.astype(np.float32))
    assert meta == {"sim_id": 3, "note": "x"}


def test_crash_mid_write_leaves_nothing_visible(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception while writing leaves neither the file nor a temporary behind."""
    root = DataRoot(tmp_path)

    def explode(handle: object, **arrays: np.ndarray) -> None:
        handle.write(b"PK\x03\x04 partial bytes")  # type: ignore[attr-defined]
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(lio.np, "savez", explode)
    with pytest.raises(OSError, match="simulated"):
        root.write_kappa(5, _maps(rng), {})
    assert not root.kappa_path(5).exists()
    assert list(tmp_path.rglob("*.partial")) == []


def test_rewrite_replaces_atomically(tmp_path: Path, rng: np.random.Generator) -> None:
    """A second write replaces the first whole; a failed rewrite keeps the old file intact."""
    root = DataRoot(tmp_path)
    root.write_kappa(5, _maps(rng), {"v": 1})
    before = root.kappa_path(5).read_bytes()
    with pytest.raises(ValueError, match="zip"):
        root.write_kappa(5, _maps(rng)[:3], {"v": 2})  # strict zip over 4 bins
    assert root.kappa_path(5).read_bytes() == before


def test_missing_file_names_sim_file_and_hint(tmp_path: Path) -> None:
    """A missing kappa file raises InputMissingError with the path and the hint."""
    with pytest.raises(
        InputMissingError, match=r"sim 42 are missing: .*sim00042\.npz does not exist\. run X"
    ):
        DataRoot(tmp_path).read_kappa(42, missing_hint="run X")


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_truncated_file_is_reported(tmp_path: Path, rng: np.random.Generator, cut: float) -> None:
    """A truncated file: ValueError naming the sim and the file."""
    root = DataRoot(tmp_path)
    path = root.write_kappa(9, _maps(rng), {})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(
        ValueError, match=r"kappa maps of sim 9.*sim00009\.npz is truncated or corrupt"
    ):
        root.read_kappa(9)


def test_missing_bin_and_mixed_nside(tmp_path: Path, rng: np.random.Generator) -> None:
    """A file without kappa_bin3, or bins of different nside, is rejected with details."""
    root = DataRoot(tmp_path)
    path = root.kappa_path(1)
    path.parent.mkdir(parents=True)
    np.savez(path, kappa_bin0=np.zeros(192), kappa_bin1=np.zeros(192), kappa_bin2=np.zeros(192))
    with pytest.raises(ValueError, match=r"lacks the arrays \['kappa_bin3'\]"):
        root.read_kappa(1)
    np.savez(path, **{k: np.zeros(192 if i else 768) for i, k in enumerate(KAPPA_KEYS)})
    with pytest.raises(ValueError, match="one nside"):
        root.read_kappa(1)


def test_tiles_of_the_wrong_shape_are_rejected(tmp_path: Path) -> None:
    """Tiles whose shape does not match their lmax fail to read, naming the file."""
    root = DataRoot(tmp_path)
    root.write_tiles(2, 200, {"noiseless": np.zeros((12, 4, 64, 64), np.float32)}, {})
    with pytest.raises(
        ValueError, match=r"tiles of sim 2 at lmax 200 .*expected \(12, 4, 128, 128\)"
    ):
        root.read_tiles(2, 200, ("noiseless",), shape=(12, 4, 128, 128))


def test_shard_file_names() -> None:
    assert ShardSet.shard_name(0, 3) == "train-00000-of-00003.parquet"
    assert ShardSet.shard_name(2, 3) == "train-00002-of-00003.parquet"
    with pytest.raises(ValueError, match="outside"):
        ShardSet.shard_name(3, 3)
