"""Flat square tiles cut from HEALPix base faces of band-limited, rotated maps.

Every tile goes through the same harmonic processing: map -> alm (band limit ``lmax``) ->
rotation -> synthesis at ``LMAX_TO_NSIDE[lmax]`` -> the four equatorial base faces (4..7)
cut into ``n x n`` images with the NESTED ``(x, y)`` layout of each face. Three orientations
give 12 tiles per map.

The fast path analyses each map once and gets every band limit by exact truncation of those
alm, rotating in harmonic space; the reference path redoes a healpy analysis and rotation for
every output, as the published dataset did, and serves tests and benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from lensing_core._types import ComplexArray, FloatArray, IntArray
from lensing_core.sky.harmonics import (
    _geometry,
    lmax_of,
    map2alm,
    synthesize_rings,
    truncate_alm,
)
from lensing_core.sky.healpix import EQUATORIAL_FACES, check_maps, face_ring_indices
from lensing_core.sky.noise import (
    N_BINS,
    check_noise_level,
    noise_power,
    noise_rng,
    white_noise_alm,
)
from lensing_core.sky.rotations import orientation_matrices, rotate_alm

logger = logging.getLogger(__name__)

#: Band limit -> tile resolution: a tile is ``nside x nside`` pixels.
LMAX_TO_NSIDE: dict[int, int] = {200: 128, 400: 256, 600: 256, 800: 512, 1000: 512}
N_ORIENTATIONS = 3
N_TILES = N_ORIENTATIONS * len(EQUATORIAL_FACES)

TileKey = tuple[int, str]


@dataclass(frozen=True)
class TilingOptions:
    """
    How tiles are made: the options every tile partition shares.

    Attributes
    ----------
    scheme
        Orientation scheme, ``belts`` or ``legacy`` (``LENSING_TILE_SCHEME``).
    noise_convention
        Shape-noise convention, ``per_component`` or ``legacy``
        (``LENSING_NOISE_CONVENTION``).
    n_iter
        Jacobi iterations of the analysis of a map (healpy's ``iter``).
    nthreads
        ducc0 threads; every core this process may use if not given (``LENSING_NTHREADS``).
    noise_realizations
        Noise realisations per (sim, noise level), ``r = 0 .. R - 1``, each seeded from
        (sim, noise level, r) (``LENSING_NOISE_REALIZATIONS``). Training draws one of them
        per tile and epoch, so the networks never see the same noise twice in a row and
        cannot learn one noise map by heart; evaluation uses realisation 0. 1 is the
        earlier behaviour (one noise map per sim).
    """

    scheme: str = "belts"
    noise_convention: str = "per_component"
    n_iter: int = 3
    nthreads: int | None = None
    noise_realizations: int = 4

    def __post_init__(self) -> None:
        if self.noise_realizations < 1:
            msg = f"noise_realizations must be >= 1, got {self.noise_realizations}"
            raise ValueError(msg)


def analysis_lmax(nside_in: int, nside_out: Mapping[int, int] | None = None) -> int:
    """
    Band limit of the one analysis of a map: the largest lmax of the table it supports.

    Every tile band limit truncates the alm of this analysis, so the tiles at one lmax do
    not depend on which other lmax values are requested together.

    Parameters
    ----------
    nside_in
        nside of the maps.
    nside_out
        Band limit -> tile nside; :data:`LMAX_TO_NSIDE` if not given.

    Raises
    ------
    ValueError
        If no lmax of the table fits (``lmax <= 3 nside_in - 1``, tile nside <= nside_in).

    Examples
    --------
    >>> analysis_lmax(1024), analysis_lmax(256)
    (1000, 600)
    """
    table = LMAX_TO_NSIDE if nside_out is None else nside_out
    fits = [lmax for lmax, n in table.items() if lmax <= 3 * nside_in - 1 and n <= nside_in]
    if not fits:
        msg = f"kappa maps have nside {nside_in}, too coarse for any lmax of {dict(table)}"
        raise ValueError(msg)
    return max(fits)


def check_request(
    nside_in: int,
    n_bins: int,
    lmaxes: Iterable[int],
    noise_levels: Iterable[str],
    scheme: str = "belts",
    nside_out: Mapping[int, int] | None = None,
) -> tuple[list[int], list[str], dict[int, int]]:
    """
    Validate a tile request against maps of *nside_in* with *n_bins* bins.

    Returns
    -------
        Sorted lmax values, noise levels in order, and the tile nside of each lmax.

    Raises
    ------
    ValueError
        For an unknown lmax, noise level or scheme, maps too coarse for an lmax, or noise
        asked of maps that are not 4 tomographic bins.
    """
    table = dict(LMAX_TO_NSIDE if nside_out is None else nside_out)
    lmax_list = sorted({int(lmax) for lmax in lmaxes})
    if not lmax_list:
        msg = "no lmax requested"
        raise ValueError(msg)
    for lmax in lmax_list:
        if lmax not in table:
            msg = f"unknown lmax {lmax}; expected one of {sorted(table)}"
            raise ValueError(msg)
        if table[lmax] > nside_in or lmax > 3 * nside_in - 1:
            msg = (
                f"kappa maps have nside {nside_in}, too coarse for lmax {lmax} "
                f"(tiles at nside {table[lmax]}, lmax <= 3 * nside - 1)"
            )
            raise ValueError(msg)
    levels = list(dict.fromkeys(noise_levels))
    for level in levels:
        check_noise_level(level)
    if any(level != "noiseless" for level in levels) and n_bins != N_BINS:
        msg = f"noise is defined for {N_BINS} tomographic bins, kappa has {n_bins}"
        raise ValueError(msg)
    orientation_matrices(scheme)  # validates the scheme name
    return lmax_list, levels, {lmax: table[lmax] for lmax in lmax_list}


@lru_cache(maxsize=16)
def _belt_layout(nside: int) -> tuple[tuple[int, int], IntArray]:
    """Ring range holding the equatorial faces, and their pixel positions within it."""
    index = face_ring_indices(nside)[list(EQUATORIAL_FACES)]  # (4, n, n) RING indices
    ringstart = _geometry(nside)["ringstart"].astype(np.int64)
    first = int(np.searchsorted(ringstart, index.min(), side="right") - 1)
    last = int(np.searchsorted(ringstart, index.max(), side="right") - 1)
    local = index - ringstart[first]
    local.setflags(write=False)
    return (first, last), local


def _cut_equatorial_faces(alm: ComplexArray, nside: int, nthreads: int | None) -> FloatArray:
    """Synthesise only the equatorial belt and cut faces 4..7: (n_maps, 4, n, n)."""
    rings, local = _belt_layout(nside)
    belt = synthesize_rings(alm, nside, rings=rings, nthreads=nthreads)  # (n_maps, n_belt_pix)
    return belt[:, local]


def extract_tiles(
    kappa: FloatArray,
    lmaxes: Iterable[int],
    noise_levels: Sequence[str] = ("noiseless",),
    *,
    scheme: str = "belts",
    seed: int = 0,
    noise_convention: str = "per_component",
    n_iter: int = 3,
    nside_out: Mapping[int, int] | None = None,
    nthreads: int | None = None,
    dtype: type[np.floating] = np.float32,
) -> dict[TileKey, FloatArray]:
    """
    Cut 12 flat tiles per map at every requested band limit and noise level (fast path).

    Parameters
    ----------
    kappa
        Convergence maps, shape ``(n_bins, npix)``, RING ordering, one nside.
    lmaxes
        Band limits; each must be a key of *nside_out*.
    noise_levels
        Names from :data:`~lensing_core.sky.noise.NOISE_LEVELS`.
    scheme
        Orientation scheme, see :func:`~lensing_core.sky.rotations.orientation_matrices`.
    seed
        Seeds the noise: one realisation per (seed, noise level), shared by every lmax and
        orientation. Assets pass the sim id.
    noise_convention
        ``"per_component"`` or ``"legacy"``, see :func:`~lensing_core.sky.noise.noise_power`.
    n_iter
        Jacobi iterations of the analysis (healpy's ``iter``).
    nside_out
        Band limit -> tile nside; :data:`LMAX_TO_NSIDE` if not given.
    nthreads
        Threads for ducc0.
    dtype
        Precision of the transforms: ``np.float32`` (default; the tiles are float32, and
        the transforms are 2-3 times faster) or ``np.float64``.

    Returns
    -------
        ``{(lmax, noise_level): tiles}`` with tiles float32, shape ``(12, n_bins, n, n)``,
        indexed ``[orientation * 4 + face_index, bin, x, y]`` (faces 4..7 in order).
        The same inputs give the same bytes, and the tiles at one lmax do not depend on
        which other lmax values are requested.

    Notes
    -----
    The maps are analysed once, at the largest lmax of the table (*nside_out*) that the
    map's nside supports (``<= 3 nside - 1``); every band limit truncates those alm, which
    is exact. Noise is white (``N_ell = sigma_e**2 / n_eff``) and drawn in harmonic
    space, equivalent to white pixel noise at the source resolution band-limited by the same
    filter. Signal and noise alm are rotated together (ducc0) once per orientation, and every
    output is synthesised once, on the equatorial rings only.
    """
    nside_in = check_maps(kappa, what="kappa maps")
    check_request(nside_in, kappa.shape[0], lmaxes, noise_levels, scheme, nside_out)
    lmax_top = analysis_lmax(nside_in, nside_out)
    alm = map2alm(kappa, lmax_top, n_iter=n_iter, nthreads=nthreads, dtype=dtype)
    by_key = tiles_from_alm(
        alm,
        lmaxes,
        noise_levels,
        nside_in=nside_in,
        scheme=scheme,
        seed=seed,
        noise_convention=noise_convention,
        nside_out=nside_out,
        nthreads=nthreads,
    )
    return {key: tiles[0] for key, tiles in by_key.items()}


def tiles_from_alm(
    alm: ComplexArray,
    lmaxes: Iterable[int],
    noise_levels: Sequence[str] = ("noiseless",),
    *,
    nside_in: int,
    scheme: str = "belts",
    seed: int = 0,
    noise_convention: str = "per_component",
    nside_out: Mapping[int, int] | None = None,
    nthreads: int | None = None,
    realizations: int = 1,
) -> dict[TileKey, FloatArray]:
    """
    The fast path after the analysis: noise, rotation, truncation, synthesis, cutting.

    Parameters
    ----------
    alm
        Analysis of the maps, shape ``(n_bins, n_alm(L))`` with ``L`` at least every lmax
        requested (normally :func:`analysis_lmax`); complex64 or complex128 sets the
        precision of the transforms.
    nside_in
        nside of the analysed maps (the noise and the band limits are checked against it).
    lmaxes, noise_levels, scheme, seed, noise_convention, nside_out, nthreads
        As in :func:`extract_tiles`.
    realizations
        Noise realisations ``r = 0 .. realizations - 1`` of every noisy level, seeded by
        :func:`~lensing_core.sky.noise.noise_rng` ``(seed, level, r)``; realisation 0 is the
        noise of :func:`extract_tiles`.

    Returns
    -------
        ``{(lmax, noise_level): tiles}``, tiles float32 of shape ``(R, 12, n_bins, n, n)``
        indexed ``[r, orientation * 4 + face_index, bin, x, y]``, with ``R = realizations``
        for noisy levels and 1 for ``"noiseless"``. All maps (signal and every realisation)
        are rotated together, so R realisations cost R noise maps more per rotation, not R
        runs.
    """
    if realizations < 1:
        raise ValueError(f"realizations must be >= 1, got {realizations}")
    n_bins = alm.shape[0]
    lmax_list, levels, tile_nside = check_request(
        nside_in, n_bins, lmaxes, noise_levels, scheme, nside_out
    )
    lmax_top = lmax_of(alm.shape[-1])
    if lmax_top < lmax_list[-1]:
        msg = f"alm of lmax {lmax_top} cannot give tiles at lmax {lmax_list[-1]}"
        raise ValueError(msg)
    start = time.perf_counter()
    # A rotation does not mix multipoles: rotate once at the largest lmax requested and
    # truncate for the others (and the noise draw for a smaller lmax is the truncation of the
    # draw for a larger one), so the tiles at one lmax do not depend on the others requested.
    lmax_top = lmax_list[-1]
    signal = truncate_alm(alm, lmax_top)
    # the maps to cut: the signal, then every (noisy level, realisation) as signal + noise
    outputs = [
        (level, r) for level in levels for r in range(1 if level == "noiseless" else realizations)
    ]
    noisy = [(level, r) for level, r in outputs if level != "noiseless"]
    noise = [
        white_noise_alm(
            noise_power(level, convention=noise_convention),
            lmax_top,
            rng=noise_rng(seed, level, r),
        )
        for level, r in noisy
    ]
    stack = np.concatenate([signal, *noise]).astype(signal.dtype)  # (n_bins * (1 + n_noisy), n_alm)
    out = {
        (lmax, level): np.empty(
            (1 if level == "noiseless" else realizations, N_TILES, n_bins, *[tile_nside[lmax]] * 2),
            np.float32,
        )
        for lmax in lmax_list
        for level in levels
    }
    for k, matrix in enumerate(orientation_matrices(scheme)):
        rotated = rotate_alm(stack, matrix, nthreads=nthreads)
        for lmax in lmax_list:
            parts = truncate_alm(rotated, lmax).reshape(1 + len(noisy), n_bins, -1)
            sums = np.concatenate(
                [
                    parts[0]
                    if level == "noiseless"
                    else parts[0] + parts[1 + noisy.index((level, r))]
                    for level, r in outputs
                ]
            )  # (n_outputs * n_bins, n_alm)
            faces = _cut_equatorial_faces(sums, tile_nside[lmax], nthreads)  # (maps, 4, n, n)
            faces = faces.reshape(len(outputs), n_bins, *faces.shape[1:])
            for i, (level, r) in enumerate(outputs):
                # (n_bins, 4 faces, n, n) -> tiles [r, k * 4 + face, bin]
                out[lmax, level][r, 4 * k : 4 * k + 4] = faces[i].transpose(1, 0, 2, 3)
    logger.debug("extract_tiles: %d outputs in %.2f s", len(out), time.perf_counter() - start)
    return out


def extract_tiles_reference(
    kappa: FloatArray,
    lmaxes: Iterable[int],
    noise_levels: Sequence[str] = ("noiseless",),
    *,
    scheme: str = "belts",
    seed: int = 0,
    noise_convention: str = "per_component",
    n_iter: int = 3,
    nside_out: Mapping[int, int] | None = None,
) -> dict[TileKey, FloatArray]:
    """
    The straightforward path: healpy analysis, rotation and synthesis for every output.

    Same arguments, noise realisation and result layout as :func:`extract_tiles`, but every
    (noise level, lmax, orientation, bin) redoes ``healpy.map2alm`` at that lmax and
    ``healpy.rotate_alm`` in double precision, as the published dataset did. For tests and
    benchmarks only. With ``n_iter=0`` it equals the fast path to float32 precision (the
    plain quadrature commutes with truncation); with iterations an analysis at a smaller
    lmax differs slightly (about 1e-3) from the truncation of the analysis at the largest.
    """
    import healpy as hp  # heavy: imported where used, so loading the code location stays light

    nside_in = check_maps(kappa, what="kappa maps")
    lmax_list, levels, tile_nside = check_request(
        nside_in, kappa.shape[0], lmaxes, noise_levels, scheme, nside_out
    )
    n_bins = kappa.shape[0]
    matrices = orientation_matrices(scheme)
    out: dict[TileKey, FloatArray] = {}
    for level in levels:
        power = noise_power(level, convention=noise_convention)
        for lmax in lmax_list:
            nside = tile_nside[lmax]
            noise = (
                white_noise_alm(power, lmax, rng=noise_rng(seed, level))
                if level != "noiseless"
                else np.zeros((n_bins, (lmax + 1) * (lmax + 2) // 2), np.complex128)
            )
            tiles = np.empty((N_TILES, n_bins, nside, nside), np.float32)
            index = face_ring_indices(nside)[list(EQUATORIAL_FACES)]  # (4, n, n)
            for k, matrix in enumerate(matrices):
                for b in range(n_bins):
                    alm = hp.map2alm(kappa[b], lmax=lmax, iter=n_iter, use_weights=False)
                    alm = alm + noise[b]
                    hp.rotate_alm(alm, matrix=matrix)
                    full = hp.alm2map(alm, nside, lmax=lmax)
                    tiles[4 * k : 4 * k + 4, b] = full[index]
            out[lmax, level] = tiles
    return out


def _faces_of(vectors: FloatArray) -> IntArray:
    """HEALPix base face (0..11) of unit vectors, shape ``(3, n)``."""
    import healpy as hp

    return hp.vec2pix(1, vectors[0], vectors[1], vectors[2], nest=True)


def tile_membership(scheme: str = "belts", nside: int = 64) -> npt.NDArray[np.bool_]:
    """
    Which of the 12 tiles of a scheme contain each pixel centre of the original sky.

    Parameters
    ----------
    scheme
        Orientation scheme name.
    nside
        Sampling resolution of the sky.

    Returns
    -------
        Boolean array of shape ``(12, npix)``, ``npix = 12 nside**2``, RING ordering:
        ``[i, p]`` is true if tile ``i`` (order as in :func:`extract_tiles`) contains the
        centre of pixel ``p``. Each orientation's 4 tiles are disjoint, so a pixel is in at
        most 3 tiles.

    See Also
    --------
    sky_coverage : the covered fraction (``membership.any(axis=0).mean()``) and overlaps.

    Notes
    -----
    Tile ``(k, f)`` shows the original sky at directions ``p`` with ``face(R_k p) == f``,
    where ``R_k`` is the orientation's active rotation.
    """
    import healpy as hp

    matrices = orientation_matrices(scheme)
    npix = 12 * nside * nside
    sky = np.array(hp.pix2vec(nside, np.arange(npix)))  # (3, npix), original frame
    membership = np.empty((N_TILES, npix), dtype=bool)
    for k, matrix in enumerate(matrices):
        faces = _faces_of(matrix @ sky)  # (npix,) base face of every direction, rotated
        for a, face in enumerate(EQUATORIAL_FACES):
            membership[4 * k + a] = faces == face
    return membership


def sky_coverage(scheme: str = "belts", nside: int = 64) -> tuple[float, FloatArray]:
    """
    Sky fraction covered by the 12 tiles of a scheme, and their pairwise overlap.

    Parameters
    ----------
    scheme
        Orientation scheme name.
    nside
        Sampling resolution: tiles are sampled at their pixel centres at this nside.

    Returns
    -------
    coverage_fraction
        Fraction of the sphere inside at least one tile.
    overlap
        Shape ``(12, 12)``: ``overlap[i, j]`` is the fraction of tile i's area that tile j
        also covers; zero diagonal. Tile order as in :func:`extract_tiles`.

    Notes
    -----
    Tile ``(k, f)`` shows the original sky at directions ``p`` with ``face(R_k p) == f``,
    where ``R_k`` is the orientation's active rotation. Membership is exact per sample, so
    the figures carry only the sampling error of the pixel centres.
    """
    import healpy as hp

    matrices = orientation_matrices(scheme)
    in_tile = tile_membership(scheme, nside).any(axis=0)  # (npix,)
    overlap = np.zeros((N_TILES, N_TILES))
    for k, matrix in enumerate(matrices):
        for a, face in enumerate(EQUATORIAL_FACES):
            ipix = face * nside * nside + np.arange(nside * nside)
            rotated_frame = np.array(hp.pix2vec(nside, ipix, nest=True))
            points = matrix.T @ rotated_frame  # (3, n) original-sky directions of tile (k, f)
            i = 4 * k + a
            for k2, matrix2 in enumerate(matrices):
                faces = _faces_of(matrix2 @ points)
                for b, face2 in enumerate(EQUATORIAL_FACES):
                    overlap[i, 4 * k2 + b] = np.mean(faces == face2)
    np.fill_diagonal(overlap, 0.0)
    return float(in_tile.mean()), overlap
