"""Tests of :mod:`lensing_core.sky.tiles`: band-limited, rotated, cut and noised tiles.

Maps are nside 32 and tiles nside 16 or 32 (``nside_out={20: 16, 40: 32}``): the
production table :data:`LMAX_TO_NSIDE` is only checked, never run.
"""

from __future__ import annotations

import itertools

import healpy as hp
import numpy as np
import pytest

from lensing_core.sky.harmonics import (
    alm_to_cl,
    map2alm,
    n_alm,
    synthesize_rings,
    truncate_alm,
)
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.rotations import SCHEMES, orientation_matrices
from lensing_core.sky.tiles import (
    LMAX_TO_NSIDE,
    extract_tiles,
    extract_tiles_reference,
    sky_coverage,
)
from tests.core.sky.helpers import random_red_maps

NSIDE = 32
TILE_NSIDE = {20: 16, 40: 32}
LMAXES = (20, 40)


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.abs(a64 - b64).max() / np.abs(b64).max())


def _tile_directions(nside: int, face: int) -> np.ndarray:
    """Return the unit vectors of the pixel centres ``[x, y]`` of a base face, (3, n, n)."""
    x, y = np.meshgrid(np.arange(nside), np.arange(nside), indexing="ij")
    nest = hp.xyf2pix(nside, x, y, face, nest=True)
    return np.array(hp.pix2vec(nside, nest, nest=True))


# ---------------------------------------------------------------------------------------------
# 1. the lmax -> tile resolution table


def test_lmax_to_nside_table() -> None:
    """The band limits and tile resolutions of the specification."""
    assert LMAX_TO_NSIDE == {200: 128, 400: 256, 600: 256, 800: 512, 1000: 512}


# ---------------------------------------------------------------------------------------------
# 2. shapes and layout


def test_output_keys_dtype_and_shapes(kappa32: np.ndarray) -> None:
    """One float32 array (12, n_bins, n, n) per requested (lmax, noise level)."""
    levels = ["noiseless", "lsst_y10"]
    out = extract_tiles(kappa32, [40, 20], levels, seed=1, nside_out=TILE_NSIDE)
    assert set(out) == set(itertools.product(LMAXES, levels))
    for (lmax, _), tiles in out.items():
        n = TILE_NSIDE[lmax]
        assert tiles.dtype == np.float32
        assert tiles.shape == (12, 4, n, n)
        assert np.all(np.isfinite(tiles))
    # fewer bins work too when no noise is asked for
    two = extract_tiles(kappa32[:2], [20], nside_out=TILE_NSIDE)
    assert set(two) == {(20, "noiseless")}
    assert two[20, "noiseless"].shape == (12, 2, 16, 16)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dipole_tiles_follow_the_face_layout(scheme: str) -> None:
    """Tile ``4k + a`` pixel ``[x, y]`` of the dipole ``d.p`` is ``d.(R_k^T n)``.

    ``n`` is the centre of NESTED pixel ``xyf2pix(n_tile, x, y, 4 + a)`` and ``R_k`` the
    orientation's active rotation. A dipole is band-limited at ell = 1, so it survives the
    filter exactly (10 analysis iterations converge to rounding). Two bins with different
    dipoles check that bins are not mixed.
    """
    dipoles = np.array([[0.3, -0.5, 0.8], [-0.9, 0.2, 0.1]])
    sky = np.array(hp.pix2vec(NSIDE, np.arange(12 * NSIDE**2)))
    kappa = dipoles @ sky  # (2, npix)
    out = extract_tiles(kappa, LMAXES, scheme=scheme, n_iter=10, nside_out=TILE_NSIDE)
    matrices = orientation_matrices(scheme)
    for lmax in LMAXES:
        tiles = out[lmax, "noiseless"]
        n = TILE_NSIDE[lmax]
        for k, a in itertools.product(range(3), range(4)):
            directions = np.einsum("ji,jxy->ixy", matrices[k], _tile_directions(n, 4 + a))
            expected = np.einsum("bi,ixy->bxy", dipoles, directions)  # d . (R^T n)
            np.testing.assert_allclose(
                tiles[4 * k + a], expected, rtol=0, atol=1e-6, err_msg=f"lmax {lmax}, tile {k},{a}"
            )


@pytest.mark.parametrize(("n_iter", "rtol"), [(3, 1e-5), (10, 3e-7)])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_constant_map_gives_constant_tiles(scheme: str, n_iter: int, rtol: float) -> None:
    """A constant map (ell = 0 only) gives tiles equal to that constant, bin by bin.

    With the default 3 iterations the analysis at lmax 40 of an nside-32 map converges to
    about 1e-6; with 10 the tiles are constant to float32 precision.
    """
    values = np.array([0.7, -1.3, 0.0, 2.5e-3])
    kappa = np.repeat(values[:, None], 12 * NSIDE**2, axis=1)
    out = extract_tiles(kappa, LMAXES, scheme=scheme, n_iter=n_iter, nside_out=TILE_NSIDE)
    for tiles in out.values():
        expected = np.broadcast_to(values[None, :, None, None], tiles.shape)
        np.testing.assert_allclose(tiles, expected, rtol=rtol, atol=rtol * 1e-1)


# ---------------------------------------------------------------------------------------------
# 3. the band limit


@pytest.mark.parametrize("lmax", [10, 20, 40])
def test_filtered_map_has_no_power_above_lmax(lmax: int) -> None:
    """Analyse, truncate, synthesise: the re-analysed map has no power above lmax.

    At ``3 nside - 1`` the HEALPix quadrature itself leaks about 1e-7 of the power (also for a
    perfectly band-limited map), so there the bound is 1e-6 while the unfiltered map has ~10%
    of its power above lmax; an analysis at ``2 nside``, where the quadrature converges,
    shows the leak is below 1e-8.
    """
    lmax_full = 3 * NSIDE - 1
    raw = random_red_maps(np.random.default_rng(7), 1, NSIDE)  # power up to 3 nside - 1
    alm = map2alm(raw, lmax_full)
    filtered = synthesize_rings(truncate_alm(alm, lmax), NSIDE)

    def power_above_over_below(maps: np.ndarray, lmax_check: int, n_iter: int) -> float:
        spectrum = alm_to_cl(map2alm(maps, lmax_check, n_iter=n_iter))[0]
        power = spectrum * (2 * np.arange(lmax_check + 1) + 1)
        return float(power[lmax + 1 :].sum() / power[: lmax + 1].sum())

    assert power_above_over_below(raw, lmax_full, 3) > 1e-2  # the check can fail
    assert power_above_over_below(filtered, lmax_full, 3) < 1e-6
    assert power_above_over_below(filtered, 2 * NSIDE, 3) < 1e-8


def _single_ell_map(ell: int, coefficients: np.ndarray) -> np.ndarray:
    """Map (1, npix) of the ell mode with ``a_{ell m} = coefficients[m]`` (m = 0..ell)."""
    lmax = 3 * NSIDE - 1
    alm = np.zeros((1, n_alm(lmax)), dtype=np.complex128)
    m = np.arange(ell + 1)
    alm[0, hp.Alm.getidx(lmax, ell, m)] = coefficients[: ell + 1]
    alm[0, hp.Alm.getidx(lmax, ell, 0)] = alm[0, hp.Alm.getidx(lmax, ell, 0)].real
    return synthesize_rings(alm, NSIDE)


def test_tiles_of_modes_above_lmax_vanish(rng: np.random.Generator) -> None:
    """Tiles of a pure ell = lmax + 5 mode are ~0 at lmax, those of ell = lmax - 5 are not."""
    coefficients = rng.standard_normal(30) + 1j * rng.standard_normal(30)
    above = _single_ell_map(25, coefficients)
    below = _single_ell_map(15, coefficients)
    out_above = extract_tiles(above, LMAXES, nside_out=TILE_NSIDE)
    out_below = extract_tiles(below, LMAXES, nside_out=TILE_NSIDE)
    scale = np.abs(out_below[20, "noiseless"]).max()
    assert scale > 0.1
    # analysed at lmax 40, truncated to 20: nothing of the ell-25 mode is left
    assert np.abs(out_above[20, "noiseless"]).max() < 1e-6 * scale
    # the same mode passes the lmax-40 filter at full strength
    assert np.abs(out_above[40, "noiseless"]).max() > 0.3 * scale
    # requested alone, lmax 20 is analysed at 20: the quadrature aliases ~1e-3 of a mode above
    alone = extract_tiles(above, [20], nside_out=TILE_NSIDE)[20, "noiseless"]
    assert np.abs(alone).max() < 1e-2 * scale


# ---------------------------------------------------------------------------------------------
# 5. sky coverage and overlaps


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sky_coverage_shapes_and_bounds(scheme: str) -> None:
    """Overlap is 12x12 with zero diagonal and values in [0, 1]; coverage obeys Bonferroni."""
    coverage, overlap = sky_coverage(scheme)
    assert overlap.shape == (12, 12)
    np.testing.assert_array_equal(np.diag(overlap), 0.0)
    assert np.all((overlap >= 0) & (overlap <= 1))
    # tiles have equal areas, so the overlap fractions are symmetric up to sampling
    np.testing.assert_allclose(overlap, overlap.T, atol=0.01)
    # union of 12 tiles of area 1/12: 1 - sum_{i<j} |T_i & T_j| <= coverage <= 1
    assert 1 - np.triu(overlap).sum() / 12 - 1e-9 <= coverage <= 1


def test_belts_coverage_and_overlap() -> None:
    """``belts``: at least 90% of the sky, no two tiles sharing more than 3%."""
    coverage, overlap = sky_coverage("belts")
    assert coverage >= 0.90
    assert overlap.max() <= 0.03
    assert sky_coverage() == (coverage, pytest.approx(overlap))  # belts is the default


def test_legacy_coverage_reproduces_its_duplicates() -> None:
    """``legacy``: tiles 8..11 duplicate the orientation-0 tiles, two pairs overlap > 90%."""
    coverage, overlap = sky_coverage("legacy")
    assert coverage < 0.55
    assert coverage == pytest.approx(0.5, abs=0.05)
    duplicates = overlap > 0.999
    np.testing.assert_array_equal(duplicates, duplicates.T)
    dup_rows = np.flatnonzero(duplicates.any(axis=1))
    # 4 duplicated pairs, each joining one tile of orientation 2 and one of orientation 0
    assert duplicates.sum() == 8
    assert set(dup_rows.tolist()) <= set(range(4)) | set(range(8, 12))
    assert set(np.flatnonzero(duplicates[8:].any(axis=0)).tolist()) == set(range(4))
    assert np.all(duplicates[8:].sum(axis=1) == 1)
    np.testing.assert_allclose(overlap[duplicates], 1.0)
    # among the 8 distinct tiles (orientations 0 and 1), two pairs overlap > 90%
    distinct = overlap[:8, :8]
    high = np.argwhere(np.triu((distinct > 0.9) & (distinct < 0.999)))
    assert len(high) == 2, high
    assert all(i < 4 <= j for i, j in high)  # each pairs an orientation-0 and -1 tile


@pytest.mark.parametrize("nside", [16, 32])
def test_sky_coverage_is_stable_in_resolution(nside: int) -> None:
    """The figures are properties of the scheme, not of the sampling resolution."""
    for scheme in SCHEMES:
        coverage, overlap = sky_coverage(scheme, nside=nside)
        ref_coverage, ref_overlap = sky_coverage(scheme, nside=64)
        assert coverage == pytest.approx(ref_coverage, abs=0.02)
        np.testing.assert_allclose(overlap, ref_overlap, atol=0.02)


def _matching_tiles(tiles: np.ndarray) -> dict[int, list[int]]:
    """For every tile, the other tiles equal to it (all bins) to float32 precision."""
    scale = np.abs(tiles).max()
    return {
        i: [
            j
            for j in range(len(tiles))
            if j != i and np.allclose(tiles[i], tiles[j], rtol=1e-5, atol=1e-6 * scale)
        ]
        for i in range(len(tiles))
    }


def test_legacy_tiles_duplicate_orientation_zero(kappa32: np.ndarray) -> None:
    """``legacy`` tiles of orientation 2 equal tiles of orientation 0, noise included.

    The duplicates found by searching agree with the overlap matrix of ``sky_coverage``, and
    the noise realisation is shared by orientations (the noisy duplicates are equal too).
    """
    out = extract_tiles(
        kappa32, [20], ["noiseless", "des_y3"], scheme="legacy", seed=109, nside_out=TILE_NSIDE
    )
    _, overlap = sky_coverage("legacy")
    for level in ("noiseless", "des_y3"):
        matches = _matching_tiles(out[20, level])
        partners = {i: matches[i] for i in range(8, 12)}
        assert all(len(p) == 1 for p in partners.values()), partners
        assert sorted(p[0] for p in partners.values()) == [0, 1, 2, 3]
        for i, (j,) in partners.items():
            assert overlap[i, j] == pytest.approx(1.0)
        # nothing else is duplicated
        assert all(matches[i] == [] for i in range(4, 8))
        assert sum(len(m) for m in matches.values()) == 8


@pytest.mark.parametrize("level", ["noiseless", "lsst_y10"])
def test_belts_tiles_are_all_distinct(kappa32: np.ndarray, level: str) -> None:
    """``belts``: no tile equals another."""
    tiles = extract_tiles(kappa32, [20], [level], seed=5, nside_out=TILE_NSIDE)[20, level]
    matches = _matching_tiles(tiles)
    assert all(m == [] for m in matches.values()), matches


# ---------------------------------------------------------------------------------------------
# 6. fast path against the reference path


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fast_path_equals_reference_without_iterations(kappa32: np.ndarray, scheme: str) -> None:
    """With ``n_iter=0`` analysis commutes with truncation: both paths agree to float32."""
    kwargs = {"scheme": scheme, "seed": 109, "n_iter": 0, "nside_out": TILE_NSIDE}
    fast = extract_tiles(kappa32, LMAXES, NOISE_LEVELS, **kwargs)
    ref = extract_tiles_reference(kappa32, LMAXES, NOISE_LEVELS, **kwargs)
    assert set(fast) == set(ref) == set(itertools.product(LMAXES, NOISE_LEVELS))
    for key in fast:
        assert fast[key].shape == ref[key].shape
        assert fast[key].dtype == ref[key].dtype == np.float32
        assert _rel_diff(fast[key], ref[key]) < 1e-5, key


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fast_path_equals_reference_at_largest_lmax_with_iterations(
    kappa32: np.ndarray, scheme: str
) -> None:
    """With the default 3 iterations the paths agree at the largest lmax (same analysis).

    At the smaller lmax the reference analyses at that lmax while the fast path truncates the
    better-converged analysis at the largest one: the maps have power above lmax 20, so the
    two differ, by a small amount.
    """
    levels = ["noiseless", "des_y3"]
    kwargs = {"scheme": scheme, "seed": 7, "nside_out": TILE_NSIDE}
    fast = extract_tiles(kappa32, LMAXES, levels, **kwargs)
    ref = extract_tiles_reference(kappa32, LMAXES, levels, **kwargs)
    for level in levels:
        assert _rel_diff(fast[40, level], ref[40, level]) < 1e-5
        assert 1e-5 < _rel_diff(fast[20, level], ref[20, level]) < 2e-2


# ---------------------------------------------------------------------------------------------
# 7. determinism and the shared noise realisation


def test_same_seed_same_bytes(kappa32: np.ndarray) -> None:
    """Two calls with the same inputs and seed return byte-identical arrays."""
    a = extract_tiles(kappa32, LMAXES, NOISE_LEVELS, seed=109, nside_out=TILE_NSIDE)
    b = extract_tiles(kappa32, LMAXES, NOISE_LEVELS, seed=109, nside_out=TILE_NSIDE)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key


def test_other_seed_other_noise_same_signal(kappa32: np.ndarray) -> None:
    """Another seed changes the noisy tiles only; noiseless tiles are byte-identical."""
    a = extract_tiles(kappa32, [20], NOISE_LEVELS, seed=109, nside_out=TILE_NSIDE)
    b = extract_tiles(kappa32, [20], NOISE_LEVELS, seed=110, nside_out=TILE_NSIDE)
    assert a[20, "noiseless"].tobytes() == b[20, "noiseless"].tobytes()
    for level in ("des_y3", "lsst_y10"):
        noise_a = a[20, level] - a[20, "noiseless"]
        noise_b = b[20, level] - b[20, "noiseless"]
        # independent realisations: uncorrelated, of similar amplitude
        corr = np.corrcoef(noise_a.ravel(), noise_b.ravel())[0, 1]
        assert abs(corr) < 0.1, (level, corr)
        assert noise_a.std() == pytest.approx(noise_b.std(), rel=0.2)
    # the two surveys' noise differ in realisation too, not just in amplitude
    noise_des = a[20, "des_y3"] - a[20, "noiseless"]
    noise_lsst = a[20, "lsst_y10"] - a[20, "noiseless"]
    assert abs(np.corrcoef(noise_des.ravel(), noise_lsst.ravel())[0, 1]) < 0.1


@pytest.mark.parametrize("level", ["des_y3", "lsst_y10"])
def test_noise_realisation_shared_across_lmax(kappa32: np.ndarray, level: str) -> None:
    """The noise at lmax 20 is the same whether 20 is requested alone or with 40.

    Noise part = noisy minus noiseless tiles of the same call. On a zero map the noise is
    isolated and both requests agree to 1e-6 of its amplitude.
    """
    levels = ["noiseless", level]
    alone = extract_tiles(kappa32, [20], levels, seed=3, nside_out=TILE_NSIDE)
    both = extract_tiles(kappa32, LMAXES, levels, seed=3, nside_out=TILE_NSIDE)
    noise_alone = alone[20, level] - alone[20, "noiseless"]
    noise_both = both[20, level] - both[20, "noiseless"]
    assert noise_alone.std() > 0
    scale = np.abs(alone[20, level]).max()
    np.testing.assert_allclose(noise_alone, noise_both, rtol=0, atol=1e-6 * scale)

    zero = np.zeros_like(kappa32)
    only_20 = extract_tiles(zero, [20], [level], seed=3, nside_out=TILE_NSIDE)[20, level]
    with_40 = extract_tiles(zero, LMAXES, [level], seed=3, nside_out=TILE_NSIDE)[20, level]
    np.testing.assert_allclose(only_20, with_40, rtol=0, atol=1e-6 * np.abs(only_20).max())
    # and it is the noise of the call with signal
    np.testing.assert_allclose(noise_alone, only_20, rtol=0, atol=1e-6 * scale)


def test_noise_of_larger_lmax_extends_that_of_smaller() -> None:
    """One realisation for all lmax: the lmax-40 noise is the lmax-20 noise plus ell 21..40.

    With both outputs at tile nside 32 (same pixels), white noise gives
    ``corr(n20, n40) = sqrt(var20 / var40) = 21 / 41`` and the difference ``n40 - n20``
    (ell 21..40 only) is uncorrelated with ``n20``; independent draws per lmax would give
    a correlation near zero.
    """
    zero = np.zeros((4, 12 * NSIDE**2))
    out = extract_tiles(zero, LMAXES, ["lsst_y10"], seed=11, nside_out={20: 32, 40: 32})
    low = out[20, "lsst_y10"].astype(np.float64)
    high = out[40, "lsst_y10"].astype(np.float64)
    corr = np.corrcoef(low.ravel(), high.ravel())[0, 1]
    assert corr == pytest.approx(21 / 41, abs=0.05)
    assert abs(np.corrcoef(low.ravel(), (high - low).ravel())[0, 1]) < 0.05


# ---------------------------------------------------------------------------------------------
# 8. bad input


def _kappa(nside: int = NSIDE, n_bins: int = 4) -> np.ndarray:
    return np.zeros((n_bins, 12 * nside**2))


def _with_nan() -> np.ndarray:
    kappa = _kappa()
    kappa[2, 100] = np.nan
    return kappa


BAD_INPUTS = [
    ("unknown-lmax", {"kappa": _kappa(), "lmaxes": [300]}, r"unknown lmax 300; expected one of"),
    (
        "unknown-lmax-custom-table",
        {"kappa": _kappa(), "lmaxes": [30], "nside_out": TILE_NSIDE},
        r"unknown lmax 30; expected one of \[20, 40\]",
    ),
    (
        "unknown-noise",
        {"kappa": _kappa(), "lmaxes": [20], "noise_levels": ["euclid"], "nside_out": TILE_NSIDE},
        r"unknown noise level 'euclid'",
    ),
    (
        "unknown-scheme",
        {"kappa": _kappa(), "lmaxes": [20], "scheme": "rings", "nside_out": TILE_NSIDE},
        r"unknown orientation scheme 'rings'",
    ),
    (
        "nan",
        {"kappa": _with_nan(), "lmaxes": [20], "nside_out": TILE_NSIDE},
        r"kappa maps: 1 NaN or infinite pixels, in map\(s\) \[2\]",
    ),
    (
        "wrong-npix",
        {"kappa": np.zeros((4, 1000)), "lmaxes": [20], "nside_out": TILE_NSIDE},
        r"kappa maps: 1000 pixels is not a HEALPix map",
    ),
    (
        "one-dimensional",
        {"kappa": np.zeros(12 * NSIDE**2), "lmaxes": [20], "nside_out": TILE_NSIDE},
        r"kappa maps: expected an array \(n_maps, npix\)",
    ),
    (
        "nside-too-small",
        {"kappa": _kappa(16), "lmaxes": [600]},
        r"kappa maps have nside 16, too coarse for lmax 600",
    ),
    (
        "lmax-above-3-nside",
        {"kappa": _kappa(16), "lmaxes": [60], "nside_out": {60: 16}},
        r"kappa maps have nside 16, too coarse for lmax 60",
    ),
    (
        "noise-for-3-bins",
        {
            "kappa": _kappa(n_bins=3),
            "lmaxes": [20],
            "noise_levels": ["noiseless", "des_y3"],
            "nside_out": TILE_NSIDE,
        },
        r"noise is defined for 4 tomographic bins, kappa has 3",
    ),
    ("no-lmax", {"kappa": _kappa(), "lmaxes": [], "nside_out": TILE_NSIDE}, r"no lmax requested"),
]


@pytest.mark.parametrize(
    ("kwargs", "match"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
@pytest.mark.parametrize("function", [extract_tiles, extract_tiles_reference])
def test_bad_input_raises_value_error_naming_the_problem(
    function: object, kwargs: dict, match: str
) -> None:
    """Every bad request fails before any work with a ``ValueError`` that names the problem."""
    with pytest.raises(ValueError, match=match):
        function(**kwargs)  # type: ignore[operator]


def test_nan_message_mentions_nan() -> None:
    """The NaN error says NaN, with the map it is in."""
    with pytest.raises(ValueError, match="NaN") as info:
        extract_tiles(_with_nan(), [20], nside_out=TILE_NSIDE)
    assert "[2]" in str(info.value)


def test_tiles_do_not_depend_on_the_other_lmax_requested(kappa32: np.ndarray) -> None:
    """One partition per lmax gives the same bytes as all lmax at once (canonical analysis)."""
    table = {20: 16, 40: 16, 60: 32}
    together = extract_tiles(kappa32, [20, 40, 60], NOISE_LEVELS, seed=3, nside_out=table)
    for lmax in table:
        alone = extract_tiles(kappa32, [lmax], NOISE_LEVELS, seed=3, nside_out=table)
        for level in NOISE_LEVELS:
            assert alone[lmax, level].tobytes() == together[lmax, level].tobytes()
