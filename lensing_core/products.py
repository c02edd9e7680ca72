"""One partition's worth of work: read inputs, compute, write atomically, describe.

These are what the Dagster assets call; each returns the written path and a JSON-ready
metadata record.

Functions
---------
make_kappa
    Kappa maps of one sim from a source, into ``kappa/sim{ID:05d}.npz``.
make_tiles
    Tiles of one (sim, lmax) for every noise level, into ``tiles/lmax{L}/sim{ID:05d}.npz``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core._types import ComplexArray, FloatArray
from lensing_core.io import InputMissingError
from lensing_core.sims.inputs import input_version
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.harmonics import map2alm
from lensing_core.sky.healpix import check_maps, nside_from_npix
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.summaries import kappa_summary, tile_summary
from lensing_core.sky.tiles import analysis_lmax, check_request, tiles_from_alm
from lensing_core.storage import DataRoot

ALM_N_ITER = 3  # Jacobi iterations of the analysis stored with the kappa maps
#: Code versions of the per-partition products: bump one when its output would change, and
#: the automation rebuilds every partition of that asset (the Dagster assets declare them).
KAPPA_CODE_VERSION = "kappa-1"
TILES_CODE_VERSION = "tiles-1"


def _analyse(maps: FloatArray, n_iter: int) -> ComplexArray:
    """The fast path's one analysis of a sim's maps (single precision, canonical lmax)."""
    lmax = analysis_lmax(nside_from_npix(maps.shape[-1]))
    return map2alm(maps.astype(np.float32), lmax, n_iter=n_iter, dtype=np.float32)


def make_kappa(root: DataRoot, source: KappaSource, sim_id: int) -> tuple[Path, dict[str, Any]]:
    """
    Load (or draw) the kappa maps of *sim_id*, analyse them once, and write both under *root*.

    Returns
    -------
        The written file and its metadata (sim id, parameters, the version of the inputs
        (:func:`lensing_core.sims.inputs.input_version`), provenance, map summary, and the
        band limit and iterations of the stored analysis).

    Notes
    -----
    The analysis (single precision, at :func:`~lensing_core.sky.tiles.analysis_lmax`) is
    what every tile partition of the sim starts from, so no tile partition analyses the maps
    again: one analysis per map, whatever the number of lmax partitions. Maps too coarse for
    any tile are stored without it.
    """
    start = time.perf_counter()
    maps, provenance = source.load(sim_id)  # first: a missing input file is the clearer error
    params = dict(source.catalog[sim_id])
    nside = check_maps(maps, what=f"kappa maps of sim {sim_id} ({provenance['source']} source)")
    cache = root.input_hash_cache()
    version = input_version(source, sim_id, cache=cache)
    cache.save()
    meta: dict[str, Any] = {
        "sim_id": sim_id,
        "params": params,
        "input_version": version,
        "provenance": provenance,
        **kappa_summary(maps),
    }
    alm = None
    with contextlib.suppress(ValueError):  # no tile fits: keep the maps, skip the analysis
        meta["alm"] = {"lmax": analysis_lmax(nside), "n_iter": ALM_N_ITER, "dtype": "float32"}
        alm = _analyse(maps, ALM_N_ITER)
    path = root.write_kappa(sim_id, maps, meta, alm=alm)
    return path, {**meta, "seconds": round(time.perf_counter() - start, 2)}


def _analysis_for_tiles(
    root: DataRoot, sim_id: int, lmax: int, *, n_iter: int, missing_hint: str
) -> tuple[ComplexArray, int, dict[str, Any]]:
    """The analysis stored with the sim's maps if it is the one wanted, else a fresh one."""
    alm, meta = root.read_kappa_alm(sim_id, missing_hint=missing_hint)
    nside = int(meta.get("nside", 0))
    if alm is not None and meta.get("alm") == {
        "lmax": analysis_lmax(nside),
        "n_iter": n_iter,
        "dtype": "float32",
    }:
        return alm, nside, meta
    maps, meta = root.read_kappa(sim_id, missing_hint=missing_hint)
    nside = check_maps(maps, what=f"kappa maps of sim {sim_id} ({root.kappa_path(sim_id)})")
    check_request(nside, maps.shape[0], [lmax], NOISE_LEVELS)  # before the analysis
    return _analyse(maps, n_iter), nside, meta


def make_tiles(
    root: DataRoot,
    sim_id: int,
    lmax: int,
    *,
    scheme: str = "belts",
    noise_convention: str = "per_component",
    n_iter: int = ALM_N_ITER,
    missing_hint: str = "",
) -> tuple[Path, dict[str, Any]]:
    """
    Cut the tiles of one (sim, lmax) for every noise level from the sim's kappa file.

    Parameters
    ----------
    root
        Data root holding ``kappa/sim{ID:05d}.npz``.
    sim_id, lmax
        The partition; the sim id also seeds the noise.
    scheme, noise_convention, n_iter
        See :func:`~lensing_core.sky.tiles.extract_tiles`.
    missing_hint
        Appended to the error if the kappa file does not exist.

    Returns
    -------
        The written file and its metadata.

    Raises
    ------
    lensing_core.io.InputMissingError
        If the kappa maps have not been made.
    ValueError
        For a corrupt or invalid kappa file or an invalid request; the message names the
        sim, lmax and file.

    Notes
    -----
    Starts from the analysis stored with the maps (see :func:`make_kappa`), so the tiles are
    the same bytes as ``extract_tiles(maps, [lmax], ...)`` without a second analysis.
    """
    start = time.perf_counter()
    try:
        alm, nside_in, kappa_meta = _analysis_for_tiles(
            root, sim_id, lmax, n_iter=n_iter, missing_hint=missing_hint
        )
        by_key = tiles_from_alm(
            alm,
            [lmax],
            NOISE_LEVELS,
            nside_in=nside_in,
            scheme=scheme,
            seed=sim_id,
            noise_convention=noise_convention,
        )
    except InputMissingError:
        raise
    except ValueError as err:
        msg = f"tiles of sim {sim_id} at lmax {lmax} from {root.kappa_path(sim_id)}: {err}"
        raise ValueError(msg) from err
    by_noise = {noise: by_key[lmax, noise] for noise in NOISE_LEVELS}
    summary = tile_summary(
        by_noise, lmax=lmax, nside_in=nside_in, scheme=scheme, convention=noise_convention
    )
    meta = {
        "sim_id": sim_id,
        "lmax": lmax,
        "source": kappa_meta.get("provenance", {}),
        "params": kappa_meta.get("params", {}),
        **summary,
    }
    path = root.write_tiles(sim_id, lmax, by_noise, meta)
    return path, {**meta, "seconds": round(time.perf_counter() - start, 2)}
