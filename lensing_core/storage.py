"""The data-root layout (SPEC section 10) and checked reads and atomic writes of its files.

Layout::

    kappa/sim{ID:05d}.npz           kappa_bin0..kappa_bin3 (RING), metadata (JSON), and
                                    alm: their analysis for the tiles (complex64)
    tiles/lmax{L}/sim{ID:05d}.npz   tiles_{noise} arrays (12, 4, n, n), metadata (JSON)
    models/compressor/lmax{L}_{noise}/   best.ckpt, last.ckpt, norm_stats.json, split.json,
                                    result.json (see lensing_core.inference.training)
    models/npe/lmax{L}_{noise}/     npe_best.ckpt, fom_result.json
    reports/fom/lmax{L}_{noise}.png the FoM figure of one configuration
    .tmp/                           temporaries, renamed into place when complete
    .cache/input_hashes.json        content hashes of the sims' input files, by size and mtime

Classes
-------
DataRoot
    Paths and I/O of one data root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core._types import ComplexArray, FloatArray
from lensing_core.io import TMP_DIR_NAME, FileHashCache, read_npz, write_npz
from lensing_core.sky.healpix import check_maps
from lensing_core.sky.tiles import LMAX_TO_NSIDE, N_TILES

N_BINS = 4
KAPPA_KEYS: tuple[str, ...] = tuple(f"kappa_bin{i}" for i in range(N_BINS))


def kappa_maps_from_arrays(arrays: Mapping[str, np.ndarray], *, what: str) -> FloatArray:
    """Stack ``kappa_bin0..3`` into ``(4, npix)`` and validate them (nside, finite values)."""
    shapes = {key: arrays[key].shape for key in KAPPA_KEYS}
    if len(set(shapes.values())) != 1 or arrays[KAPPA_KEYS[0]].ndim != 1:
        msg = f"{what}: the four bins must be 1-d maps of one nside, got shapes {shapes}"
        raise ValueError(msg)
    maps = np.stack([arrays[key] for key in KAPPA_KEYS])
    check_maps(maps, what=what)
    return maps


@dataclass(frozen=True)
class DataRoot:
    """
    One data root: where every artifact of the platform lives.

    Parameters
    ----------
    root
        Directory; created on first write.
    """

    root: Path

    @property
    def tmp_root(self) -> Path:
        """Directory for temporaries (same file system, outside the layout)."""
        return self.root / TMP_DIR_NAME

    def input_hash_cache(self) -> FileHashCache:
        """The cache of input-file content hashes, ``.cache/input_hashes.json``."""
        return FileHashCache(self.root / ".cache" / "input_hashes.json", tmp_root=self.tmp_root)

    def kappa_path(self, sim_id: int) -> Path:
        """``kappa/sim{ID:05d}.npz``."""
        return self.root / "kappa" / f"sim{sim_id:05d}.npz"

    def tiles_path(self, sim_id: int, lmax: int) -> Path:
        """``tiles/lmax{L}/sim{ID:05d}.npz``."""
        return self.root / "tiles" / f"lmax{lmax}" / f"sim{sim_id:05d}.npz"

    def compressor_dir(self, lmax: int, noise_level: str) -> Path:
        """``models/compressor/lmax{L}_{noise}``: the compressor of one configuration."""
        return self.root / "models" / "compressor" / f"lmax{lmax}_{noise_level}"

    def npe_dir(self, lmax: int, noise_level: str) -> Path:
        """``models/npe/lmax{L}_{noise}``: the NPE and the FoM record of one configuration."""
        return self.root / "models" / "npe" / f"lmax{lmax}_{noise_level}"

    def fom_figure_path(self, lmax: int, noise_level: str) -> Path:
        """``reports/fom/lmax{L}_{noise}.png``: the FoM figure of one configuration."""
        return self.root / "reports" / "fom" / f"lmax{lmax}_{noise_level}.png"

    def write_kappa(
        self,
        sim_id: int,
        maps: FloatArray,
        metadata: Mapping[str, Any],
        *,
        alm: ComplexArray | None = None,
    ) -> Path:
        """
        Write the 4 RING maps of one sim (float32) with their metadata, atomically.

        Parameters
        ----------
        sim_id, maps, metadata
            The sim, its maps ``(4, npix)`` and a JSON-ready record.
        alm
            Optional analysis of the maps, ``(4, n_alm)``, stored as ``alm`` so that every
            tile partition of the sim reuses it instead of analysing the maps again.
        """
        arrays = {
            key: np.asarray(m, dtype=np.float32) for key, m in zip(KAPPA_KEYS, maps, strict=True)
        }
        if alm is not None:
            arrays["alm"] = np.asarray(alm, dtype=np.complex64)
        return write_npz(self.kappa_path(sim_id), arrays, metadata, tmp_root=self.tmp_root)

    def read_kappa(
        self, sim_id: int, *, missing_hint: str = ""
    ) -> tuple[FloatArray, dict[str, Any]]:
        """
        Read and validate the kappa maps of one sim.

        Returns
        -------
            Maps, shape ``(4, npix)``, RING, and the metadata written with them.

        Raises
        ------
        lensing_core.io.InputMissingError
            If the file does not exist (the message ends with *missing_hint*).
        ValueError
            If the file is corrupt, lacks a bin, or holds maps of a bad size or non-finite values.
        """
        path = self.kappa_path(sim_id)
        arrays, metadata = read_npz(
            path, KAPPA_KEYS, what=f"kappa maps of sim {sim_id}", missing_hint=missing_hint
        )
        return kappa_maps_from_arrays(arrays, what=f"kappa maps of sim {sim_id} ({path})"), metadata

    def read_kappa_metadata(self, sim_id: int, *, missing_hint: str = "") -> dict[str, Any]:
        """
        The metadata record of one sim's kappa file, without reading its arrays.

        Raises
        ------
        lensing_core.io.InputMissingError, ValueError
            As :meth:`read_kappa`.
        """
        what = f"kappa maps of sim {sim_id}"
        _, metadata = read_npz(self.kappa_path(sim_id), (), what=what, missing_hint=missing_hint)
        return metadata

    def read_kappa_alm(
        self, sim_id: int, *, missing_hint: str = ""
    ) -> tuple[ComplexArray | None, dict[str, Any]]:
        """
        Read the stored analysis of one sim's kappa maps, without reading the maps.

        Returns
        -------
            ``alm`` of shape ``(4, n_alm)`` (``None`` if the file has none) and the metadata.

        Raises
        ------
        lensing_core.io.InputMissingError, ValueError
            As :meth:`read_kappa`.
        """
        path = self.kappa_path(sim_id)
        what = f"kappa maps of sim {sim_id}"
        metadata = self.read_kappa_metadata(sim_id, missing_hint=missing_hint)
        if "alm" not in metadata:
            return None, metadata
        arrays, _ = read_npz(path, ("alm",), what=what)
        alm = arrays["alm"]
        if alm.ndim != 2 or alm.shape[0] != N_BINS or alm.dtype != np.complex64:
            msg = (
                f"{what} ({path}): alm has shape {alm.shape} {alm.dtype}, expected (4, n) complex64"
            )
            raise ValueError(msg)
        return alm, metadata

    def write_tiles(
        self, sim_id: int, lmax: int, tiles: Mapping[str, FloatArray], metadata: Mapping[str, Any]
    ) -> Path:
        """Write ``tiles_{noise}`` arrays of one (sim, lmax) atomically."""
        arrays = {f"tiles_{noise}": np.asarray(t, dtype=np.float32) for noise, t in tiles.items()}
        return write_npz(self.tiles_path(sim_id, lmax), arrays, metadata, tmp_root=self.tmp_root)

    def read_tiles(
        self, sim_id: int, lmax: int, noise_levels: tuple[str, ...]
    ) -> tuple[dict[str, FloatArray], dict[str, Any]]:
        """
        Read and validate the tiles of one (sim, lmax).

        Returns
        -------
            ``{noise_level: tiles (12, 4, n, n) float32}`` and the metadata.
        """
        path = self.tiles_path(sim_id, lmax)
        what = f"tiles of sim {sim_id} at lmax {lmax}"
        arrays, metadata = read_npz(path, tuple(f"tiles_{n}" for n in noise_levels), what=what)
        n = LMAX_TO_NSIDE.get(lmax)
        expected = (N_TILES, N_BINS, n, n)
        for key, array in arrays.items():
            if array.shape != expected or array.dtype != np.float32:
                msg = (
                    f"{what} ({path}): {key} has shape {array.shape} {array.dtype}, "
                    f"expected {expected} float32"
                )
                raise ValueError(msg)
        return {key.removeprefix("tiles_"): a for key, a in arrays.items()}, metadata
