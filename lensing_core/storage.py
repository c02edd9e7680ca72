"""The data-root layout: every path of the platform's artifacts, and the kappa and tile files.

Layout::

    kappa/sim{ID:05d}.npz                 kappa_bin0..kappa_bin3 (RING), metadata (JSON), and
                                          alm: their analysis for the tiles (complex64)
    tiles/lmax{L}/sim{ID:05d}.npz         tiles_{noise} arrays (12, 4, n, n), metadata (JSON)
    hf_dataset/                           the dataset revision in Hugging Face Hub layout:
        README.md, revision.json          dataset card, revision record
        data/lmax_{L}_{noise}/            train-0000i-of-0000N.parquet shards, shards.json
    models/compressor/lmax{L}_{noise}/    best.ckpt, last.ckpt, norm_stats.json, split.json,
                                          result.json, logs/
    models/npe/lmax{L}_{noise}/           npe_best.ckpt, fom_result.json
    models/cl/lmax{L}_{noise}/            band_powers.npz: band powers of every tile row
    reports/fom/lmax{L}_{noise}.png       the FoM figure of one configuration
    reports/kappa_checks/sim{ID:05d}_spectra.png   the spectra figure of the kappa checks
    .cache/input_hashes.json              content hashes of the sims' input files
    .tmp/                                 temporaries, renamed into place when complete

This module knows names and file formats only: what the arrays mean is checked by the
modules that make and use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core._types import ComplexArray, FloatArray
from lensing_core.io import TMP_DIR_NAME, FileHashCache, read_npz, write_bytes, write_npz

N_BINS = 4
KAPPA_KEYS: tuple[str, ...] = tuple(f"kappa_bin{i}" for i in range(N_BINS))
#: The Hugging Face split every shard belongs to (``train-*.parquet``).
SPLIT = "train"


def config_dir_name(lmax: int, noise_level: str) -> str:
    """``lmax_{L}_{noise}``: the directory (and dataset configuration) of one configuration."""
    return f"lmax_{lmax}_{noise_level}"


def _tiles_key(noise_level: str, realization: int) -> str:
    """Array name of one noise realisation in a tile file (realisation 0: ``tiles_{noise}``)."""
    return f"tiles_{noise_level}" + (f"_r{realization}" if realization else "")


def stack_kappa_bins(arrays: Mapping[str, np.ndarray], *, what: str) -> FloatArray:
    """
    Stack ``kappa_bin0..3`` into ``(4, npix)``.

    Raises
    ------
    ValueError
        The bins are not 1-d maps of one size (the message starts with *what*).
    """
    shapes = {key: arrays[key].shape for key in KAPPA_KEYS}
    if len(set(shapes.values())) != 1 or arrays[KAPPA_KEYS[0]].ndim != 1:
        msg = f"{what}: the four bins must be 1-d maps of one nside, got shapes {shapes}"
        raise ValueError(msg)
    return np.stack([arrays[key] for key in KAPPA_KEYS])


@dataclass(frozen=True)
class ShardSet:
    """
    The directory of one configuration's parquet shards.

    Attributes
    ----------
    dir
        ``hf_dataset/data/lmax_{L}_{noise}`` (or any directory holding a shard set).
    """

    dir: Path

    GLOB = f"{SPLIT}-*.parquet"
    MANIFEST = "shards.json"

    @property
    def manifest(self) -> Path:
        """``shards.json``: rows, shards, sims and content hash of the set."""
        return self.dir / self.MANIFEST

    @staticmethod
    def shard_name(index: int, count: int) -> str:
        """
        File name of shard *index* of *count* (Hugging Face Hub convention).

        Examples
        --------
        >>> ShardSet.shard_name(0, 3)
        'train-00000-of-00003.parquet'
        """
        if not 0 <= index < count:
            msg = f"shard index {index} outside 0..{count - 1}"
            raise ValueError(msg)
        return f"{SPLIT}-{index:05d}-of-{count:05d}.parquet"


@dataclass(frozen=True)
class RevisionDir:
    """
    A dataset revision in Hugging Face Hub layout.

    Attributes
    ----------
    dir
        ``hf_dataset`` (or any directory laid out the same way).
    """

    dir: Path

    DATA_DIR = "data"
    CARD = "README.md"
    RECORD = "revision.json"

    @property
    def card(self) -> Path:
        """``README.md``: the dataset card with its YAML configurations."""
        return self.dir / self.CARD

    @property
    def record(self) -> Path:
        """``revision.json``: revision id, configurations and content hashes."""
        return self.dir / self.RECORD

    @property
    def data(self) -> Path:
        """``data/``: one shard set per configuration."""
        return self.dir / self.DATA_DIR

    def shards(self, config: str) -> ShardSet:
        """The shard set of configuration *config* (``lmax_{L}_{noise}``)."""
        return ShardSet(self.data / config)


@dataclass(frozen=True)
class CompressorFiles:
    """
    The files of one configuration's compressor.

    Attributes
    ----------
    dir
        ``models/compressor/lmax{L}_{noise}`` (or any directory a training writes to).
    """

    dir: Path

    LOGS = "logs"

    @property
    def best(self) -> Path:
        """Weights of the lowest validation loss."""
        return self.dir / "best.ckpt"

    @property
    def last(self) -> Path:
        """Full training state at the last epoch end (for resuming)."""
        return self.dir / "last.ckpt"

    @property
    def norm_stats(self) -> Path:
        """Normalisation statistics of the compressor-train split."""
        return self.dir / "norm_stats.json"

    @property
    def split(self) -> Path:
        """The split of the shards' rows."""
        return self.dir / "split.json"

    @property
    def result(self) -> Path:
        """The training record, written last (the completion marker)."""
        return self.dir / "result.json"


@dataclass(frozen=True)
class NPEFiles:
    """
    The files of one configuration's NPE and FoM record.

    Attributes
    ----------
    dir
        ``models/npe/lmax{L}_{noise}``.
    """

    dir: Path

    @property
    def checkpoint(self) -> Path:
        """The NPE's weights, config and provenance."""
        return self.dir / "npe_best.ckpt"

    @property
    def fom_result(self) -> Path:
        """The FoM record of the configuration."""
        return self.dir / "fom_result.json"


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

    @property
    def hf_dataset(self) -> RevisionDir:
        """``hf_dataset``: the local dataset revision."""
        return RevisionDir(self.root / "hf_dataset")

    def shards(self, lmax: int, noise_level: str) -> ShardSet:
        """``hf_dataset/data/lmax_{L}_{noise}``: the shard set of one configuration."""
        return self.hf_dataset.shards(config_dir_name(lmax, noise_level))

    def compressor(self, lmax: int, noise_level: str) -> CompressorFiles:
        """``models/compressor/lmax{L}_{noise}``: the compressor of one configuration."""
        return CompressorFiles(self.root / "models" / "compressor" / f"lmax{lmax}_{noise_level}")

    def npe(self, lmax: int, noise_level: str) -> NPEFiles:
        """``models/npe/lmax{L}_{noise}``: the NPE and the FoM record of one configuration."""
        return NPEFiles(self.root / "models" / "npe" / f"lmax{lmax}_{noise_level}")

    def cl_dir(self, lmax: int, noise_level: str) -> Path:
        """``models/cl/lmax{L}_{noise}``: the power-spectrum baseline of one configuration."""
        return self.root / "models" / "cl" / f"lmax{lmax}_{noise_level}"

    def band_powers_path(self, lmax: int, noise_level: str) -> Path:
        """``models/cl/lmax{L}_{noise}/band_powers.npz``: band powers of every tile row."""
        return self.cl_dir(lmax, noise_level) / "band_powers.npz"

    def cl_compressor_path(self, lmax: int, noise_level: str) -> Path:
        """``models/cl/lmax{L}_{noise}/cl_compressor.pt``: the band-power compressor."""
        return self.cl_dir(lmax, noise_level) / "cl_compressor.pt"

    def cl_npe_path(self, lmax: int, noise_level: str) -> Path:
        """``models/cl/lmax{L}_{noise}/npe_best.ckpt``: the power-spectrum NPE."""
        return self.cl_dir(lmax, noise_level) / "npe_best.ckpt"

    def cl_fom_result_path(self, lmax: int, noise_level: str) -> Path:
        """``models/cl/lmax{L}_{noise}/fom_result.json``: the power-spectrum FoM record."""
        return self.cl_dir(lmax, noise_level) / "fom_result.json"

    def fisher_path(self, lmax: int, noise_level: str) -> Path:
        """``models/fisher/lmax{L}_{noise}/fisher.json``: the Fisher forecast record."""
        return self.root / "models" / "fisher" / f"lmax{lmax}_{noise_level}" / "fisher.json"

    def fom_figure_path(self, lmax: int, noise_level: str, *, summary: str = "field") -> Path:
        """``reports/fom/lmax{L}_{noise}.png`` (field) or ``reports/fom_cl/...`` (band powers).

        The FoM figure of one configuration for the *summary* ``"field"`` or ``"cl"``.
        """
        folder = {"field": "fom", "cl": "fom_cl"}[summary]
        return self.root / "reports" / folder / f"lmax{lmax}_{noise_level}.png"

    def calibration_figure_path(
        self, lmax: int, noise_level: str, *, summary: str = "field"
    ) -> Path:
        """``reports/calibration/lmax{L}_{noise}.png`` (field) or ``reports/calibration_cl/...``.

        The calibration diagnostics (coverage, TARP, SBC ranks) of one configuration's test
        split for the *summary* ``"field"`` or ``"cl"``.
        """
        folder = {"field": "calibration", "cl": "calibration_cl"}[summary]
        return self.root / "reports" / folder / f"lmax{lmax}_{noise_level}.png"

    @property
    def study_dir(self) -> Path:
        """``reports/study``: the comparison report (``study.json``, ``.png``, ``.md``)."""
        return self.root / "reports" / "study"

    def spectra_plot_path(self, sim_id: int) -> Path:
        """``reports/kappa_checks/sim{ID:05d}_spectra.png``: the kappa checks' figure."""
        return self.root / "reports" / "kappa_checks" / f"sim{sim_id:05d}_spectra.png"

    def write_bytes(self, path: Path, data: bytes) -> Path:
        """Write *data* (a figure, ...) to *path* under the root, atomically."""
        return write_bytes(path, data, tmp_root=self.tmp_root)

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
        Read the kappa maps of one sim as they were written (non-finite pixels included).

        Returns
        -------
            Maps, shape ``(4, npix)``, RING, and the metadata written with them. Whether
            they are valid HEALPix maps is for the caller to check
            (:func:`lensing_core.sky.healpix.check_maps`).

        Raises
        ------
        lensing_core.io.InputMissingError
            If the file does not exist (the message ends with *missing_hint*).
        ValueError
            If the file is corrupt, lacks a bin, or its bins differ in size.
        """
        path = self.kappa_path(sim_id)
        arrays, metadata = read_npz(
            path, KAPPA_KEYS, what=f"kappa maps of sim {sim_id}", missing_hint=missing_hint
        )
        return stack_kappa_bins(arrays, what=f"kappa maps of sim {sim_id} ({path})"), metadata

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
        """
        Write the tiles of one (sim, lmax) atomically.

        Parameters
        ----------
        sim_id, lmax
            The partition.
        tiles
            ``{noise_level: tiles}``, each ``(12, n_bins, n, n)`` (one noise realisation) or
            ``(R, 12, n_bins, n, n)`` (realisations ``r = 0 .. R - 1``).
        metadata
            Stored with the arrays; ``noise_realizations`` (``{noise_level: R}``) is added.

        Notes
        -----
        Realisation 0 of a level is the array ``tiles_{noise}``, realisation ``r >= 1`` the
        array ``tiles_{noise}_r{r}``: a file of one realisation per level has the layout of
        the files written before several were drawn.
        """
        arrays: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for noise, t in tiles.items():
            stack = np.asarray(t, dtype=np.float32)
            stack = stack[None] if stack.ndim == 4 else stack
            counts[noise] = len(stack)
            for r, array in enumerate(stack):
                arrays[_tiles_key(noise, r)] = array
        meta = {**metadata, "noise_realizations": counts}
        return write_npz(self.tiles_path(sim_id, lmax), arrays, meta, tmp_root=self.tmp_root)

    def read_tiles(
        self,
        sim_id: int,
        lmax: int,
        noise_levels: tuple[str, ...],
        *,
        shape: tuple[int, ...] | None = None,
        realizations: bool = False,
    ) -> tuple[dict[str, FloatArray], dict[str, Any]]:
        """
        Read the tiles of one (sim, lmax).

        Parameters
        ----------
        sim_id, lmax
            The partition.
        noise_levels
            The noise levels to read.
        shape
            The shape every array of one realisation must have, ``(12, 4, n, n)``; not
            checked if not given.
        realizations
            Read every noise realisation the file records (``noise_realizations`` in its
            metadata; 1 if it records none) instead of realisation 0 only.

        Returns
        -------
            ``{noise_level: tiles float32}``, each ``(12, 4, n, n)``, or ``(R, 12, 4, n, n)``
            with *realizations*; and the metadata.

        Raises
        ------
        lensing_core.io.InputMissingError
            If the file does not exist.
        ValueError
            If it is corrupt, lacks an array, or an array is not float32 of *shape*.
        """
        path = self.tiles_path(sim_id, lmax)
        what = f"tiles of sim {sim_id} at lmax {lmax}"
        keys: dict[str, tuple[str, ...]] = {n: (_tiles_key(n, 0),) for n in noise_levels}
        if realizations:
            _, metadata = read_npz(path, (), what=what)
            counts = metadata.get("noise_realizations") or {}
            for noise in noise_levels:
                count = counts.get(noise, 1)
                if not isinstance(count, int) or count < 1:
                    msg = f"{what} ({path}): noise_realizations of {noise} is {count!r}"
                    raise ValueError(msg)
                keys[noise] = tuple(_tiles_key(noise, r) for r in range(count))
        wanted = tuple(key for noise in noise_levels for key in keys[noise])
        arrays, metadata = read_npz(path, wanted, what=what)
        for key, array in arrays.items():
            if array.dtype != np.float32 or (shape is not None and array.shape != shape):
                expected = "float32" if shape is None else f"{shape} float32"
                msg = (
                    f"{what} ({path}): {key} has shape {array.shape} {array.dtype}, "
                    f"expected {expected}"
                )
                raise ValueError(msg)
        if realizations:
            return {n: np.stack([arrays[k] for k in keys[n]]) for n in noise_levels}, metadata
        return {noise: arrays[keys[noise][0]] for noise in noise_levels}, metadata
