"""One partition's worth of work: read inputs, compute, write atomically, describe.

These are what the per-sim Dagster assets call. Each returns a result whose ``to_metadata()``
describes it (:mod:`lensing_core.results`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core._types import ComplexArray, FloatArray
from lensing_core.io import InputMissingError
from lensing_core.plotting import coverage_figure, figure_to_png_bytes, spectra_figure, tile_gallery
from lensing_core.results import Image, Table
from lensing_core.sims.inputs import input_version
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.harmonics import map2alm
from lensing_core.sky.healpix import check_maps, nside_from_npix
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.summaries import kappa_summary, tile_summary
from lensing_core.sky.tiles import TilingOptions, analysis_lmax, check_request, tiles_from_alm
from lensing_core.storage import DataRoot
from lensing_core.validation import KappaValidation, read_kappa_for_checks, validate_kappa_maps

#: Code versions of the per-partition products: bump one when its output would change, and
#: the automation rebuilds every partition of that asset (the Dagster assets declare them).
KAPPA_CODE_VERSION = "kappa-1"
TILES_CODE_VERSION = "tiles-2"  # 2: several noise realisations per (sim, noise level)
DEFAULT_TILING = TilingOptions()
#: The tile gallery shows the tiles a DES Y3-like survey would see.
GALLERY_NOISE = "des_y3"


@dataclass(frozen=True)
class KappaResult:
    """
    The kappa maps of one sim, written.

    Attributes
    ----------
    path
        ``kappa/sim{ID:05d}.npz``.
    record
        The metadata written with the maps, and the seconds it took.
    """

    path: Path
    record: Mapping[str, Any]

    def to_metadata(self) -> dict[str, Any]:
        """The file, its size and the record."""
        return {
            "path": self.path,
            "size_mb": round(self.path.stat().st_size / 2**20, 1),
            **self.record,
        }


@dataclass(frozen=True)
class TilesResult:
    """
    The tiles of one (sim, lmax), written.

    Attributes
    ----------
    path
        ``tiles/lmax{L}/sim{ID:05d}.npz``.
    record
        The metadata written with the tiles, and the seconds it took.
    tiles
        ``{noise_level: (12, 4, n, n) float32}``: realisation 0 of what was written.
    """

    path: Path
    record: Mapping[str, Any]
    tiles: Mapping[str, FloatArray]

    def to_metadata(self) -> dict[str, Any]:
        """The file, the record, the tile gallery and the coverage figure of the scheme."""
        sim_id, lmax, scheme = self.record["sim_id"], self.record["lmax"], self.record["scheme"]
        gallery = tile_gallery(
            self.tiles[GALLERY_NOISE], title=f"tiles[{sim_id}|{lmax}]", noise_label=GALLERY_NOISE
        )
        return {
            "path": self.path,
            **self.record,
            # about 40 KB: one per partition goes into the event log
            "tile_gallery": Image(figure_to_png_bytes(gallery, dpi=48, colors=32), "tile gallery"),
            "coverage_figure": Image(_coverage_png(scheme), "coverage figure"),
        }


@lru_cache(maxsize=4)
def _coverage_png(scheme: str) -> bytes:
    """The coverage figure depends on the scheme only: drawn once per process."""
    return figure_to_png_bytes(coverage_figure(scheme))


def _analyse(maps: FloatArray, options: TilingOptions) -> ComplexArray:
    """The fast path's one analysis of a sim's maps (single precision, canonical lmax)."""
    lmax = analysis_lmax(nside_from_npix(maps.shape[-1]))
    return map2alm(
        maps.astype(np.float32),
        lmax,
        n_iter=options.n_iter,
        nthreads=options.nthreads,
        dtype=np.float32,
    )


def make_kappa(
    root: DataRoot, source: KappaSource, sim_id: int, options: TilingOptions = DEFAULT_TILING
) -> KappaResult:
    """
    Load (or draw) the kappa maps of *sim_id*, analyse them once, and write both under *root*.

    Parameters
    ----------
    root, source, sim_id
        Where to write, where the maps come from, and which sim.
    options
        The tiling options: the stored analysis uses their iterations and threads.

    Returns
    -------
        The written file and its record (sim id, parameters, the version of the inputs
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
        meta["alm"] = {"lmax": analysis_lmax(nside), "n_iter": options.n_iter, "dtype": "float32"}
        alm = _analyse(maps, options)
    path = root.write_kappa(sim_id, maps, meta, alm=alm)
    return KappaResult(path, {**meta, "seconds": round(time.perf_counter() - start, 2)})


def _analysis_for_tiles(
    root: DataRoot, sim_id: int, lmaxes: list[int], options: TilingOptions, missing_hint: str
) -> tuple[ComplexArray, int, dict[str, Any]]:
    """The analysis stored with the sim's maps if it is the one wanted, else a fresh one."""
    alm, meta = root.read_kappa_alm(sim_id, missing_hint=missing_hint)
    nside = int(meta.get("nside", 0))
    if alm is not None and meta.get("alm") == {
        "lmax": analysis_lmax(nside),
        "n_iter": options.n_iter,
        "dtype": "float32",
    }:
        return alm, nside, meta
    maps, meta = root.read_kappa(sim_id, missing_hint=missing_hint)
    nside = check_maps(maps, what=f"kappa maps of sim {sim_id} ({root.kappa_path(sim_id)})")
    check_request(nside, maps.shape[0], lmaxes, NOISE_LEVELS)  # before the analysis
    return _analyse(maps, options), nside, meta


def check_band_limit(sim_id: int, lmax: int, band_limit: int | None, *, source: str) -> None:
    """
    Refuse tiles at an lmax above the band limit of the maps they are cut from.

    Parameters
    ----------
    sim_id, lmax
        The tile partition.
    band_limit
        The largest multipole the sim's maps hold signal at (``band_limit`` in the kappa
        file's provenance, :meth:`lensing_core.sims.sources.KappaSource.band_limit`);
        ``None``: not known, the maps are taken as full resolution.
    source
        The source the maps came from, for the message.

    Raises
    ------
    ValueError
        If ``lmax > band_limit``: the tiles would hold noise but no signal at
        ``band_limit < ell <= lmax``. The message names the sim, the band limit and lmax.
    """
    if band_limit is None or lmax <= int(band_limit):
        return
    hint = " (synthetic maps: LENSING_NSIDE >= lmax / 2)" if source == "synthetic" else ""
    msg = (
        f"the {source} source's maps of sim {sim_id} are band-limited at ell = {band_limit}, "
        f"below lmax {lmax}: tiles would have no signal at {band_limit} < ell <= {lmax}; "
        f"use lmax <= {band_limit} or maps band-limited at ell >= {lmax}{hint}"
    )
    raise ValueError(msg)


def make_tiles(
    root: DataRoot,
    sim_id: int,
    lmax: int,
    options: TilingOptions = DEFAULT_TILING,
    *,
    missing_hint: str = "",
) -> TilesResult:
    """
    Cut the tiles of one (sim, lmax) for every noise level from the sim's kappa file.

    Parameters
    ----------
    root
        Data root holding ``kappa/sim{ID:05d}.npz``.
    sim_id, lmax
        The partition; the sim id also seeds the noise.
    options
        Scheme, noise convention, analysis iterations, threads and the number of noise
        realisations (each noisy level gets ``options.noise_realizations``, seeded from
        (sim, noise level, r)).
    missing_hint
        Appended to the error if the kappa file does not exist.

    Returns
    -------
        The written file, its record and the tiles.

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
    the same bytes as ``extract_tiles(maps, [lmax], ...)`` without a second analysis. One
    lmax of :func:`make_tiles_batch`.
    """
    outcome = make_tiles_batch(root, sim_id, [lmax], options, missing_hint=missing_hint)[lmax]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def make_tiles_batch(
    root: DataRoot,
    sim_id: int,
    lmaxes: Iterable[int],
    options: TilingOptions = DEFAULT_TILING,
    *,
    missing_hint: str = "",
) -> dict[int, TilesResult | Exception]:
    """
    The tiles of one sim at several lmax, each orientation rotated once for all of them.

    Parameters
    ----------
    root, sim_id, options, missing_hint
        As in :func:`make_tiles`.
    lmaxes
        The band limits wanted (tile partitions ``sim_id|lmax``).

    Returns
    -------
        ``{lmax: outcome}`` for every lmax asked: the written :class:`TilesResult`, or the
        exception that stopped that lmax (:class:`~lensing_core.io.InputMissingError` if the
        kappa maps are missing, ``ValueError`` naming the sim, lmax and file otherwise). One
        lmax refused (e.g. above the maps' band limit) does not stop the others.

    Notes
    -----
    The signal and noise alm are rotated once per orientation at the analysis' band limit
    and truncated to every lmax (:func:`~lensing_core.sky.tiles.tiles_from_alm`); a rotation
    does not mix multipoles, so each lmax gets the same bytes as :func:`make_tiles` alone
    at the cost of one rotation instead of one per lmax. Each record's ``seconds`` is its
    share of the batch's time; ``batch_lmax`` lists the lmax made together.
    """
    start = time.perf_counter()
    wanted = sorted({int(lmax) for lmax in lmaxes})
    outcomes: dict[int, TilesResult | Exception] = {}

    def refuse(lmaxes_refused: Iterable[int], err: Exception) -> None:
        for lmax in lmaxes_refused:
            msg = f"tiles of sim {sim_id} at lmax {lmax} from {root.kappa_path(sim_id)}: {err}"
            outcomes[lmax] = ValueError(msg)

    try:
        alm, nside_in, kappa_meta = _analysis_for_tiles(root, sim_id, wanted, options, missing_hint)
    except InputMissingError as err:
        return dict.fromkeys(wanted, err)
    except ValueError as err:
        refuse(wanted, err)
        return outcomes
    provenance = kappa_meta.get("provenance", {})
    good = []
    for lmax in wanted:
        try:
            source = provenance.get("source", "kappa")
            check_band_limit(sim_id, lmax, provenance.get("band_limit"), source=source)
            check_request(nside_in, alm.shape[0], [lmax], NOISE_LEVELS)
            good.append(lmax)
        except ValueError as err:
            refuse([lmax], err)
    if not good:
        return outcomes
    try:
        by_key = tiles_from_alm(
            alm,
            good,
            NOISE_LEVELS,
            nside_in=nside_in,
            scheme=options.scheme,
            seed=sim_id,
            noise_convention=options.noise_convention,
            nthreads=options.nthreads,
            realizations=options.noise_realizations,
        )
    except ValueError as err:
        refuse(good, err)
        return outcomes
    seconds = round((time.perf_counter() - start) / len(good), 2)
    for lmax in good:
        by_noise = {noise: by_key[lmax, noise] for noise in NOISE_LEVELS}  # (R, 12, 4, n, n)
        first = {noise: tiles[0] for noise, tiles in by_noise.items()}  # realisation 0
        summary = tile_summary(
            first,
            lmax=lmax,
            nside_in=nside_in,
            scheme=options.scheme,
            convention=options.noise_convention,
        )
        meta = {
            "sim_id": sim_id,
            "lmax": lmax,
            "source": provenance,
            "params": kappa_meta.get("params", {}),
            **summary,
            "noise_realizations": {noise: len(tiles) for noise, tiles in by_noise.items()},
        }
        try:
            path = root.write_tiles(sim_id, lmax, by_noise, meta)
        except OSError as err:
            outcomes[lmax] = err
            continue
        record = {**meta, "seconds": seconds, "batch_lmax": good}
        outcomes[lmax] = TilesResult(path, record, first)
    return outcomes


@dataclass(frozen=True)
class KappaChecks:
    """
    The checks of one sim's kappa maps.

    Attributes
    ----------
    sim_id
        The sim.
    validation
        Every check's outcome and the spectra comparison.
    plot_path
        ``reports/kappa_checks/sim{ID:05d}_spectra.png``, if the spectra were compared.
    plot_png
        The same figure.
    """

    sim_id: int
    validation: KappaValidation
    plot_path: Path | None = None
    plot_png: bytes | None = None

    def to_metadata(self, name: str) -> dict[str, Any]:
        """The numbers of check *name*; the spectra check adds its band table and figure."""
        outcome = self.validation.outcomes[name]
        metadata = dict(outcome.metadata)
        if name == "spectra_match_theory" and self.plot_png is not None:
            metadata.update(
                {
                    "band_ratios": self._band_table(),
                    "plot": Image(self.plot_png, "spectra"),
                    "plot_path": self.plot_path,
                }
            )
        return metadata

    def _band_table(self) -> Table:
        comparison, verdict = self.validation.comparison, self.validation.verdict
        assert comparison is not None
        assert verdict is not None
        labels = [f"ratio_{comparison.pair_label(k)}" for k in range(len(comparison.pairs))]
        rows = [
            {
                "ell_lo": int(comparison.edges[b]),
                "ell_hi": int(comparison.edges[b + 1]) - 1,
                **{label: round(float(r), 4) for label, r in zip(labels, ratios, strict=True)},
                "tolerance_min": round(float(verdict.tolerance[:, b].min()), 4),
            }
            for b, ratios in enumerate(comparison.ratio.T)
        ]
        columns = {"ell_lo": "int", "ell_hi": "int", **dict.fromkeys(labels, "float")}
        return Table({**columns, "tolerance_min": "float"}, rows)


def check_kappa(root: DataRoot, source: KappaSource, sim_id: int) -> KappaChecks:
    """
    Check the kappa maps of one sim: values, mean, variance order, spectra against theory.

    The spectra figure is written to ``reports/kappa_checks/sim{ID:05d}_spectra.png``.

    Raises
    ------
    lensing_core.io.InputMissingError
        The kappa file does not exist.
    ValueError
        It is corrupt or its maps are not HEALPix maps (the message names the file).
    """
    maps, meta = read_kappa_for_checks(root, sim_id)
    validation = validate_kappa_maps(maps, meta.get("params", {}), source.nz())
    if validation.comparison is None or validation.verdict is None:
        return KappaChecks(sim_id, validation)
    figure = spectra_figure(
        validation.comparison, validation.verdict, title=f"kappa_maps[{sim_id}]: spectra vs theory"
    )
    png = figure_to_png_bytes(figure)
    path = root.write_bytes(root.spectra_plot_path(sim_id), png)
    return KappaChecks(sim_id, validation, path, png)
