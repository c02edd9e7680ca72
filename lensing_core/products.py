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

import time
from pathlib import Path
from typing import Any

from lensing_core.sims.sources import KappaSource
from lensing_core.sky.healpix import nside_from_npix
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import extract_tiles
from lensing_core.storage import DataRoot
from lensing_core.summaries import kappa_summary, tile_summary


def make_kappa(root: DataRoot, source: KappaSource, sim_id: int) -> tuple[Path, dict[str, Any]]:
    """
    Load (or draw) the kappa maps of *sim_id* and write them under *root*.

    Returns
    -------
        The written file and its metadata (sim id, parameters, provenance, map summary).
    """
    start = time.perf_counter()
    maps, provenance = source.load(sim_id)  # first: a missing input file is the clearer error
    params = dict(source.catalog[sim_id])
    meta = {"sim_id": sim_id, "params": params, "provenance": provenance, **kappa_summary(maps)}
    path = root.write_kappa(sim_id, maps, meta)
    return path, {**meta, "seconds": round(time.perf_counter() - start, 2)}


def make_tiles(
    root: DataRoot,
    sim_id: int,
    lmax: int,
    *,
    scheme: str = "belts",
    noise_convention: str = "per_component",
    n_iter: int = 3,
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
    """
    maps, kappa_meta = root.read_kappa(sim_id, missing_hint=missing_hint)
    start = time.perf_counter()
    try:
        by_key = extract_tiles(
            maps,
            [lmax],
            NOISE_LEVELS,
            scheme=scheme,
            seed=sim_id,
            noise_convention=noise_convention,
            n_iter=n_iter,
        )
    except ValueError as err:
        msg = f"tiles of sim {sim_id} at lmax {lmax} from {root.kappa_path(sim_id)}: {err}"
        raise ValueError(msg) from err
    by_noise = {noise: by_key[lmax, noise] for noise in NOISE_LEVELS}
    summary = tile_summary(
        by_noise,
        lmax=lmax,
        nside_in=nside_from_npix(maps.shape[1]),
        scheme=scheme,
        convention=noise_convention,
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
