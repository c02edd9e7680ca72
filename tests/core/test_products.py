"""One partition's work: kappa files carry their analysis, and tiles reuse it exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensing_core.io import InputMissingError
from lensing_core.products import check_band_limit, make_kappa, make_tiles
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.sky.harmonics import n_alm
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import TilingOptions, analysis_lmax, extract_tiles
from lensing_core.storage import DataRoot

NSIDE = 128


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    """Synthetic maps at nside 128 over the first 110 sims of the design."""
    return SyntheticSource(synthetic_catalog(110), nside=NSIDE)


def test_kappa_file_holds_maps_and_their_analysis(tmp_path: Path, source: SyntheticSource) -> None:
    """make_kappa writes the maps and one analysis at the canonical lmax, with metadata."""
    root = DataRoot(tmp_path)
    result = make_kappa(root, source, 109)
    path, meta = result.path, result.record
    assert path == root.kappa_path(109)
    assert meta["alm"] == {"lmax": analysis_lmax(NSIDE), "n_iter": 3, "dtype": "float32"}
    assert meta["params"]["Omega_m"] == pytest.approx(0.3006605338)
    alm, file_meta = root.read_kappa_alm(109)
    assert alm is not None
    assert analysis_lmax(NSIDE) == 200  # the only lmax whose 128 x 128 tiles fit nside 128
    assert alm.shape == (4, n_alm(200))
    assert alm.dtype == np.complex64
    assert file_meta["alm"] == meta["alm"]
    assert file_meta["provenance"]["band_limit"] == 2 * NSIDE  # the synthetic maps' lmax


@pytest.mark.parametrize("lmax", [200])
def test_tiles_from_stored_analysis_equal_extract_tiles(
    tmp_path: Path, source: SyntheticSource, lmax: int
) -> None:
    """Tiles made from the stored alm are the bytes extract_tiles gives from the maps."""
    root = DataRoot(tmp_path)
    make_kappa(root, source, 109)
    maps, _ = root.read_kappa(109)
    make_tiles(root, 109, lmax)
    by_noise, meta = root.read_tiles(109, lmax, NOISE_LEVELS)
    expected = extract_tiles(maps, [lmax], NOISE_LEVELS, seed=109)
    for level in NOISE_LEVELS:
        assert by_noise[level].tobytes() == expected[lmax, level].tobytes()
    assert meta["sim_id"] == 109


def test_tiles_without_or_with_stale_analysis_recompute(
    tmp_path: Path, source: SyntheticSource
) -> None:
    """A kappa file without alm (or with alm of other settings) gives the same tiles."""
    root = DataRoot(tmp_path)
    make_kappa(root, source, 108)
    make_tiles(root, 108, 200)
    reference, _ = root.read_tiles(108, 200, NOISE_LEVELS)
    maps, meta = root.read_kappa(108)
    meta.pop("alm")
    root.write_kappa(108, maps, meta)  # no analysis stored
    assert root.read_kappa_alm(108)[0] is None
    make_tiles(root, 108, 200)
    again, _ = root.read_tiles(108, 200, NOISE_LEVELS)
    for level in NOISE_LEVELS:
        assert again[level].tobytes() == reference[level].tobytes()
    make_tiles(root, 108, 200, TilingOptions(n_iter=0))  # other settings: stored alm unused
    other, _ = root.read_tiles(108, 200, NOISE_LEVELS)
    assert not np.array_equal(other["noiseless"], reference["noiseless"])


def test_missing_kappa_raises_input_missing(tmp_path: Path) -> None:
    """No kappa file: InputMissingError with the hint, not a ValueError."""
    with pytest.raises(InputMissingError, match=r"sim 7 are missing.*do this"):
        make_tiles(DataRoot(tmp_path), 7, 200, missing_hint="do this")


@pytest.mark.parametrize(("lmax", "band_limit"), [(200, None), (200, 200), (200, 256)])
def test_band_limit_at_or_above_lmax_passes(lmax: int, band_limit: int | None) -> None:
    """An unknown band limit, or one at or above lmax, lets the tiles be cut."""
    check_band_limit(12, lmax, band_limit, source="synthetic")


def test_band_limit_below_lmax_is_refused() -> None:
    """lmax-600 tiles of nside-256 synthetic maps (band limit 512): the message says why."""
    with pytest.raises(ValueError, match=r"sim 12 .*ell = 512, below lmax 600") as info:
        check_band_limit(12, 600, 512, source="synthetic")
    assert "use lmax <= 512" in str(info.value)
    assert "LENSING_NSIDE" in str(info.value)
    with pytest.raises(ValueError, match="the kappa_npz source's maps of sim 3") as info:
        check_band_limit(3, 400, 300, source="kappa_npz")
    assert "LENSING_NSIDE" not in str(info.value)


def test_tiles_above_the_maps_band_limit_are_refused(tmp_path: Path) -> None:
    """Synthetic maps band-limited at 150 give no lmax-200 tiles, and no tile file."""
    root = DataRoot(tmp_path)
    band_limited = SyntheticSource(synthetic_catalog(110), nside=NSIDE, lmax=150)
    make_kappa(root, band_limited, 109)
    assert root.read_kappa(109)[1]["provenance"]["band_limit"] == 150
    with pytest.raises(ValueError, match=r"band-limited at ell = 150, below lmax 200") as info:
        make_tiles(root, 109, 200)
    message = str(info.value)
    assert "tiles of sim 109 at lmax 200" in message
    assert "synthetic source's maps of sim 109" in message
    assert str(root.kappa_path(109)) in message
    assert not root.tiles_path(109, 200).exists()
    assert not (tmp_path / "tiles").exists()
