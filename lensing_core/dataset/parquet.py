"""Parquet shards of one configuration (lmax, noise level), written atomically.

A configuration's shard set is ``train-0000i-of-0000N.parquet`` files of bounded size and a
``shards.json`` manifest (rows, shards, sims included and skipped, content hash) in one
directory (:class:`lensing_core.storage.ShardSet`). It is built in a staging directory and
swapped into place in one step, so a reader sees the old set or the new one, never a part.
Identical tiles give identical shard bytes and the same content hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lensing_core._types import FloatArray
from lensing_core.dataset.schema import (
    CONTENT_HASH_VERSION,
    ID_COLUMNS,
    N_FACES,
    PARAM_COLUMNS,
    arrow_schema,
    config_name,
    new_row_hash,
    read_kappa,
    tile_shape,
    update_row_hash,
)
from lensing_core.io import (
    InputMissingError,
    file_sha256,
    fsync_path,
    remove_stale_staging,
    staging_dir,
    swap_directory,
    write_json,
)
from lensing_core.sky.tiles import N_ORIENTATIONS, N_TILES
from lensing_core.storage import DataRoot, ShardSet

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 256 * 2**20
ROW_GROUP_TARGET_BYTES = 32 * 2**20  # rows buffered before a row group is written

# Fixed writer settings. No compression: float32 kappa compresses by ~7% with zstd (~16% with
# byte-stream-split + zstd) at a third of the write and read speed, and uncompressed PLAIN
# pages decode as a copy. Dictionary encoding only for the one repeated string. Statistics
# for the scalar columns (filter push-down on sim_id); none for kappa. Parquet files carry no
# timestamp: the only build-dependent bytes are pyarrow's ``created_by`` string.
_SCALAR_COLUMNS = [*ID_COLUMNS, "noise_level", *PARAM_COLUMNS]
PARQUET_WRITE_OPTIONS: Mapping[str, Any] = {
    "version": "2.6",
    "compression": "none",
    "use_dictionary": ["noise_level"],
    "write_statistics": _SCALAR_COLUMNS,
    "data_page_size": 1 << 20,
    "store_schema": True,  # the Arrow schema: kappa's extension type travels with the file
}

# Size model of one shard, used to bound it from above before writing. Measured overhead of the
# nested-list encoding of kappa (repetition levels, page headers): 1.2% at 128 x 128 and less
# for larger tiles; 3% is used. Footer: schema metadata (~4 KiB) plus ~2 KiB per row group.
_ENCODING_MARGIN = 0.03
_ROW_EXTRA_BYTES = 512  # the scalar columns of a row, generously
_FOOTER_BYTES = 64 * 1024
_ROW_GROUP_FOOTER_BYTES = 8 * 1024

_STAGING_PREFIX = "shards-"


@dataclass(frozen=True)
class ShardFile:
    """One shard file: where it is, its rows, its size in bytes and the sha256 of its bytes."""

    path: Path
    rows: int
    bytes: int
    sha256: str

    @property
    def name(self) -> str:
        """File name, e.g. ``train-00000-of-00003.parquet``."""
        return self.path.name


@dataclass(frozen=True)
class SkippedSim:
    """
    A sim left out of a configuration.

    Attributes
    ----------
    sim_id
        The sim.
    kind
        ``"missing"`` (no tile file), ``"invalid"`` (corrupt, wrong shape, non-finite values or
        metadata that contradicts the request) or ``"not_in_catalog"``.
    path
        The tile file concerned.
    reason
        Message naming the sim, the file and what was wrong.
    """

    sim_id: int
    kind: str
    path: Path
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "sim_id": self.sim_id,
            "kind": self.kind,
            "path": str(self.path),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ShardReport:
    """
    The shard set of one configuration.

    Attributes
    ----------
    config, lmax, noise_level
        The configuration.
    out_dir
        Directory holding the shards and the manifest.
    rows
        Number of rows (12 per included sim and noise realisation).
    shards
        The shard files in order.
    sims_included
        Sims whose tiles are in the shards, ascending.
    skipped
        Sims requested but left out, with reasons.
    content_hash
        sha256 of the rows in order (see :func:`~lensing_core.dataset.schema.update_row_hash`):
        independent of the parquet encoding and of the shard boundaries.
    tile_provenance
        ``{"scheme": [...], "noise_convention": [...]}``: the values the included tile files
        record in their metadata (``"unknown"`` where a file records none).
    max_shard_bytes
        The bound the shards were written under.
    seconds
        Wall time of the build (0 for a report read from a manifest).
    cleaned_temporaries
        Leftovers of killed runs removed from the temporary directory before this build.
    """

    config: str
    lmax: int
    noise_level: str
    out_dir: Path
    rows: int
    shards: tuple[ShardFile, ...]
    sims_included: tuple[int, ...]
    skipped: tuple[SkippedSim, ...]
    content_hash: str
    tile_provenance: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    seconds: float = 0.0
    cleaned_temporaries: tuple[str, ...] = ()

    @property
    def shard_paths(self) -> list[Path]:
        """Paths of the shard files in order."""
        return [shard.path for shard in self.shards]

    @property
    def total_bytes(self) -> int:
        """Sum of the shard file sizes."""
        return sum(shard.bytes for shard in self.shards)

    @property
    def sims_missing(self) -> tuple[int, ...]:
        """Sims skipped because their tile file does not exist."""
        return tuple(s.sim_id for s in self.skipped if s.kind == "missing")

    def to_manifest(self) -> dict[str, Any]:
        """The manifest record: deterministic (no timings), shard names relative to *out_dir*."""
        return {
            "config": self.config,
            "lmax": self.lmax,
            "noise_level": self.noise_level,
            "rows": self.rows,
            "content_hash": self.content_hash,
            "content_hash_version": CONTENT_HASH_VERSION,
            "max_shard_bytes": self.max_shard_bytes,
            "shards": [
                {"name": s.name, "rows": s.rows, "bytes": s.bytes, "sha256": s.sha256}
                for s in self.shards
            ],
            "sims_included": list(self.sims_included),
            "skipped": [s.to_dict() for s in self.skipped],
            "tile_provenance": {k: list(v) for k, v in sorted(self.tile_provenance.items())},
        }

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready summary for asset metadata."""
        rate = self.rows / self.seconds if self.seconds > 0 else None
        return {
            "config": self.config,
            "out_dir": str(self.out_dir),
            "rows": self.rows,
            "n_sims_included": len(self.sims_included),
            "sims_included": list(self.sims_included),
            "n_sims_skipped": len(self.skipped),
            "sims_missing": list(self.sims_missing),
            "skipped": [s.to_dict() for s in self.skipped],
            "n_shards": len(self.shards),
            "shard_bytes": [s.bytes for s in self.shards],
            "total_bytes": self.total_bytes,
            "content_hash": self.content_hash,
            "tile_provenance": {k: list(v) for k, v in sorted(self.tile_provenance.items())},
            "seconds": round(self.seconds, 3),
            "rows_per_second": None if rate is None else round(rate, 1),
            "cleaned_temporaries": list(self.cleaned_temporaries),
        }


def write_config_shards(
    root: DataRoot,
    catalog: Mapping[int, Mapping[str, float]],
    lmax: int,
    noise_level: str,
    sim_ids: Iterable[int],
    *,
    out_dir: Path | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    scheme: str | None = None,
    noise_convention: str | None = None,
    noise_realizations: int | None = None,
    strict: bool = False,
) -> ShardReport:
    """
    Write the parquet shards of one configuration from the tile files of *sim_ids*.

    Parameters
    ----------
    root
        Data root holding ``tiles/lmax{L}/sim{ID:05d}.npz``; temporaries go to its ``.tmp``.
    catalog
        ``catalog[sim_id]`` -> parameters with at least the 8 of
        :data:`~lensing_core.dataset.schema.PARAM_COLUMNS`.
    lmax, noise_level
        The configuration.
    sim_ids
        Sims to include (any order, duplicates ignored); rows are ordered by
        ``(sim_id, noise_realization, orientation_id, tile_id)``: every noise realisation
        the tile files hold.
    out_dir
        Destination of the shard set; ``root.shards(lmax, noise_level).dir`` if not given.
        Must be on the file
        system of ``root.tmp_root``.
    max_shard_bytes
        Upper bound of each shard file's size.
    scheme, noise_convention
        If given, a tile file whose metadata records another orientation scheme or noise
        convention is skipped as invalid (so a configuration never mixes them).
    noise_realizations
        If given, a tile file holding another number of noise realisations of a noisy
        level is skipped as invalid (so every sim has the same ``12 R`` rows); noiseless
        tiles always have one.
    strict
        Raise on the first invalid or uncatalogued sim instead of skipping it (missing tile
        files are always skipped).

    Returns
    -------
        The report; also written to ``out_dir/shards.json``.

    Raises
    ------
    ValueError
        For an unknown lmax or noise level, a bound smaller than one row, when no sim has
        valid tiles, or (with *strict*) for a bad sim. The shard set in *out_dir*, if any,
        is left as it was.

    Notes
    -----
    Tile files are read one at a time (only the requested noise level), so memory holds the
    current sim's tiles and the rows of one pending row group (~32 MiB of rows: 128 rows at
    lmax 200, 8 at lmax 800/1000), never the whole suite. Shards are written into a fresh staging
    directory ``{root}/.tmp/shards-{config}.{pid}.{uuid}`` and named
    ``train-{i:05d}-of-{n:05d}.parquet`` once their number is known; the manifest is written
    there too and every file and the directory are fsynced. The staging directory then
    replaces *out_dir* in one step: ``renameat2(RENAME_EXCHANGE)`` swaps the two directories
    atomically (Linux), after which the previous set, now under the staging name, is deleted.
    Where the exchange is not supported, *out_dir* is renamed aside and the staging directory
    renamed onto it: a reader may briefly find no directory, never a partial one. A failure
    deletes the staging directory; a killed run leaves it under ``.tmp``, where the next build
    of the same configuration deletes it (any ``shards-{config}.{pid}.*`` whose process is gone).
    Identical inputs give identical shard bytes (fixed writer settings, deterministic row
    order and shard boundaries) and the same content hash.
    """
    start = time.perf_counter()
    config = config_name(lmax, noise_level)
    shape = tile_shape(lmax)
    schema = arrow_schema(lmax)
    out_dir = Path(out_dir) if out_dir is not None else root.shards(lmax, noise_level).dir
    rows_per_shard, rows_per_group = _shard_layout(shape, max_shard_bytes)

    tmp_root = root.tmp_root
    tmp_root.mkdir(parents=True, exist_ok=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if tmp_root.stat().st_dev != out_dir.parent.stat().st_dev:
        msg = f"{config}: {out_dir} is not on the file system of {tmp_root}; cannot swap atomically"
        raise ValueError(msg)
    cleaned = remove_stale_staging(tmp_root, f"{_STAGING_PREFIX}{config}")
    staging = staging_dir(tmp_root, f"{_STAGING_PREFIX}{config}")

    included: list[int] = []
    skipped: list[SkippedSim] = []
    provenance: dict[str, set[str]] = {
        "scheme": set(),
        "noise_convention": set(),
        "noise_realizations": set(),
    }
    digest = new_row_hash(lmax, noise_level)
    expected: dict[str, str | int | None] = {"scheme": scheme, "noise_convention": noise_convention}
    if noise_realizations is not None:
        expected["noise_realizations"] = 1 if noise_level == "noiseless" else noise_realizations
    try:
        with _ShardSink(staging, schema, rows_per_shard, rows_per_group, max_shard_bytes) as sink:
            for sim_id in sorted({int(s) for s in sim_ids}):
                outcome = _read_sim(root, catalog, sim_id, lmax, noise_level, expected)
                if isinstance(outcome, SkippedSim):
                    # A sim not tiled yet is routine (one line at the end); a bad file is not.
                    level = logging.DEBUG if outcome.kind == "missing" else logging.WARNING
                    logger.log(level, "%s: skipping sim %d: %s", config, sim_id, outcome.reason)
                    if strict and outcome.kind != "missing":
                        raise ValueError(outcome.reason)
                    skipped.append(outcome)
                    continue
                tiles, params, meta = outcome
                ids, table = _sim_rows(tiles, sim_id, lmax, noise_level, params, schema)
                flat = tiles.reshape(len(ids), *tiles.shape[2:])
                update_row_hash(digest, flat, ids, noise_level, _repeat_params(params, len(ids)))
                sink.write(table)
                included.append(sim_id)
                for key in ("scheme", "noise_convention"):
                    provenance[key].add(str(meta.get(key, "unknown")))
                provenance["noise_realizations"].add(str(len(tiles)))
                del flat
                del tiles, table
            parts = sink.close()
        n_missing = sum(s.kind == "missing" for s in skipped)
        if n_missing:
            logger.info(
                "%s: %d sims have no tiles at lmax %d yet: skipped", config, n_missing, lmax
            )
        if not included:
            reasons = "; ".join(s.reason for s in skipped[:5]) or "no sim requested"
            msg = f"{config}: no sim has valid tiles at lmax {lmax} ({reasons})"
            raise ValueError(msg)
        shards = _name_shards(parts, out_dir)
        report = ShardReport(
            config=config,
            lmax=lmax,
            noise_level=noise_level,
            out_dir=out_dir,
            rows=sum(s.rows for s in shards),
            shards=tuple(shards),
            sims_included=tuple(included),
            skipped=tuple(skipped),
            content_hash=digest.hexdigest(),
            tile_provenance={k: tuple(sorted(v)) for k, v in provenance.items()},
            max_shard_bytes=max_shard_bytes,
            cleaned_temporaries=tuple(cleaned),
        )
        write_json(
            ShardSet(staging).manifest, report.to_manifest(), tmp_root=staging, sort_keys=True
        )
        swap_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d rows from %d sims in %d shards (%.1f MB), %d sims skipped, %.1f s",
        config,
        report.rows,
        len(included),
        len(shards),
        report.total_bytes / 1e6,
        len(skipped),
        seconds,
    )
    return replace(report, seconds=seconds)


def _repeat_params(params: Mapping[str, float], rows: int) -> np.ndarray:
    """``(rows, 8)`` float64: the parameters of one sim repeated for each of its rows."""
    values = np.array([float(params[key]) for key in PARAM_COLUMNS], dtype=np.float64)
    return np.broadcast_to(values, (rows, len(PARAM_COLUMNS)))


def read_shard_manifest(out_dir: Path) -> ShardReport:
    """
    The report of the shard set in *out_dir*, from its manifest, checked against the files.

    Raises
    ------
    FileNotFoundError
        If the manifest or a shard it lists does not exist.
    ValueError
        If the manifest is unreadable or a shard's size differs from the recorded one.
    """
    out_dir = Path(out_dir)
    path = ShardSet(out_dir).manifest
    if not path.is_file():
        msg = f"shard manifest {path} does not exist (shards of {out_dir.name} not written?)"
        raise FileNotFoundError(msg)
    try:
        record = json.loads(path.read_text())
        shards = tuple(
            ShardFile(out_dir / s["name"], int(s["rows"]), int(s["bytes"]), str(s["sha256"]))
            for s in record["shards"]
        )
        skipped = tuple(
            SkippedSim(int(s["sim_id"]), s["kind"], Path(s["path"]), s["reason"])
            for s in record["skipped"]
        )
        report = ShardReport(
            config=record["config"],
            lmax=int(record["lmax"]),
            noise_level=record["noise_level"],
            out_dir=out_dir,
            rows=int(record["rows"]),
            shards=shards,
            sims_included=tuple(int(s) for s in record["sims_included"]),
            skipped=skipped,
            content_hash=record["content_hash"],
            tile_provenance={k: tuple(v) for k, v in record["tile_provenance"].items()},
            max_shard_bytes=int(record["max_shard_bytes"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        msg = f"shard manifest {path} is unreadable ({type(err).__name__}: {err})"
        raise ValueError(msg) from None
    for shard in shards:
        if not shard.path.is_file():
            msg = f"{report.config}: shard {shard.path} listed in {path} does not exist"
            raise FileNotFoundError(msg)
        size = shard.path.stat().st_size
        if size != shard.bytes:
            msg = f"{report.config}: shard {shard.path} has {size} bytes; manifest: {shard.bytes}"
            raise ValueError(msg)
    return report


def iter_shard_tables(
    paths: Iterable[Path], columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """Row groups of shard files in order, as Arrow tables (for checks and tests)."""
    for path in paths:
        handle = pq.ParquetFile(path)
        for group in range(handle.num_row_groups):
            yield handle.read_row_group(group, columns=columns)


def hash_shards(paths: Iterable[Path], lmax: int, noise_level: str) -> str:
    """
    Content hash of shard files, recomputed from their rows (same definition as the report's).

    Parameters
    ----------
    paths
        Shard files in order.
    lmax, noise_level
        Their configuration.
    """
    digest = new_row_hash(lmax, noise_level)
    shape = tile_shape(lmax)
    columns = ["kappa", *ID_COLUMNS, "noise_level", *PARAM_COLUMNS]
    for table in iter_shard_tables(paths, columns):
        levels = set(table.column("noise_level").unique().to_pylist())
        if levels - {noise_level}:
            msg = f"rows of noise level {sorted(levels)} in shards of {noise_level!r}"
            raise ValueError(msg)
        kappa = read_kappa(table.column("kappa"), what=f"shards of {lmax}|{noise_level}")
        if kappa.shape[1:] != shape:
            msg = f"shards of {lmax}|{noise_level}: tiles of shape {kappa.shape[1:]}, not {shape}"
            raise ValueError(msg)
        ids = np.stack([table.column(c).to_numpy() for c in ID_COLUMNS], axis=1)
        params = np.stack([table.column(c).to_numpy() for c in PARAM_COLUMNS], axis=1)
        update_row_hash(digest, kappa, ids, noise_level, params)
    return digest.hexdigest()


# --- reading one sim ----------------------------------------------------------------------


def _read_sim(
    root: DataRoot,
    catalog: Mapping[int, Mapping[str, float]],
    sim_id: int,
    lmax: int,
    noise_level: str,
    expected: Mapping[str, str | int | None],
) -> SkippedSim | tuple[FloatArray, Mapping[str, float], dict[str, Any]]:
    """The tiles, parameters and tile metadata of one sim, or why it is skipped."""
    path = root.tiles_path(sim_id, lmax)
    catalog_name = getattr(catalog, "name", type(catalog).__name__)
    if sim_id not in catalog:
        reason = f"sim {sim_id} is not in the catalog {catalog_name}; tile file {path} unused"
        return SkippedSim(sim_id, "not_in_catalog", path, reason)
    params = catalog[sim_id]
    absent = [key for key in PARAM_COLUMNS if key not in params]
    bad = [key for key in PARAM_COLUMNS if key in params and not np.isfinite(float(params[key]))]
    if absent or bad:
        reason = (
            f"sim {sim_id} in the catalog {catalog_name} lacks parameters {absent} or has "
            f"non-finite ones {bad}; its tile file {path} is unused"
        )
        return SkippedSim(sim_id, "not_in_catalog", path, reason)
    try:
        by_noise, meta = root.read_tiles(
            sim_id, lmax, (noise_level,), shape=(N_TILES, *tile_shape(lmax)), realizations=True
        )
    except InputMissingError:
        reason = f"tiles of sim {sim_id} at lmax {lmax} are missing: {path} does not exist"
        return SkippedSim(sim_id, "missing", path, reason)
    except ValueError as err:
        return SkippedSim(sim_id, "invalid", path, str(err))
    tiles = by_noise[noise_level]
    n_bad = int(tiles.size - np.count_nonzero(np.isfinite(tiles)))
    problems = []
    if n_bad:
        problems.append(f"{n_bad} non-finite values in tiles_{noise_level}")
    recorded = {**meta, "noise_realizations": len(tiles)}
    for key, want in (("sim_id", sim_id), ("lmax", lmax), *expected.items()):
        have = recorded.get(key)
        if want is not None and have is not None and have != want:
            problems.append(f"its metadata records {key} {have!r}, expected {want!r}")
    if problems:
        reason = f"tiles of sim {sim_id} at lmax {lmax} ({path}): " + "; ".join(problems)
        return SkippedSim(sim_id, "invalid", path, reason)
    return tiles, params, meta


@lru_cache(maxsize=8)
def _list_offsets(rows: int, shape: tuple[int, ...]) -> tuple[pa.Array, ...]:
    """Offsets of the nested lists holding *rows* arrays of *shape*, outermost first."""
    offsets = []
    count = rows
    for size in shape:
        offsets.append(pa.array(np.arange(count + 1, dtype=np.int32) * size))
        count *= size
    return tuple(offsets)


def _kappa_array(tiles: FloatArray, kappa_type: pa.DataType) -> pa.ExtensionArray:
    """Tiles ``(rows, 4, n, n)`` as the ``Array3D`` extension array (no copy of the values)."""
    rows, *shape = tiles.shape
    storage: pa.Array = pa.array(np.ascontiguousarray(tiles, dtype=np.float32).reshape(-1))
    for offsets in reversed(_list_offsets(rows, tuple(shape))):
        storage = pa.ListArray.from_arrays(offsets, storage)
    return pa.ExtensionArray.from_storage(kappa_type, storage)


def _sim_rows(
    tiles: FloatArray,
    sim_id: int,
    lmax: int,
    noise_level: str,
    params: Mapping[str, float],
    schema: pa.Schema,
) -> tuple[np.ndarray, pa.Table]:
    """The ``12 R`` rows of one sim's ``(R, 12, ...)`` tiles: their ids ``(12 R, 5)``, the table."""
    if tiles.ndim != 5 or tiles.shape[1] != N_TILES:
        msg = f"sim {sim_id}: expected tiles of shape (R, {N_TILES}, ...), got {tiles.shape}"
        raise ValueError(msg)
    n_real = tiles.shape[0]
    rows = n_real * N_TILES
    # row i of the flattened (R, 12, ...) stack is realisation i // 12, orientation
    # (i % 12) // 4, face i % 4
    realization = np.repeat(np.arange(n_real, dtype=np.int32), N_TILES)
    orientation = np.tile(np.repeat(np.arange(N_ORIENTATIONS, dtype=np.int32), N_FACES), n_real)
    face = np.tile(np.arange(N_FACES, dtype=np.int32), N_ORIENTATIONS * n_real)
    ids = np.stack(
        [
            np.full(rows, sim_id, np.int32),
            realization,
            orientation,
            face,
            np.full(rows, lmax, np.int32),
        ],
        axis=1,
    )
    tiles = tiles.reshape(rows, *tiles.shape[2:])
    arrays: list[pa.Array] = [_kappa_array(tiles, schema.field("kappa").type)]
    arrays += [pa.array(ids[:, i]) for i in range(len(ID_COLUMNS))]
    arrays.append(pa.array([noise_level] * rows, type=pa.string()))
    arrays += [pa.array(np.full(rows, float(params[key]))) for key in PARAM_COLUMNS]
    return ids, pa.Table.from_arrays(arrays, schema=schema)


# --- writing shards -----------------------------------------------------------------------


def _shard_layout(shape: Sequence[int], max_shard_bytes: int) -> tuple[int, int]:
    """Rows per shard and per row group that keep every shard under *max_shard_bytes*."""
    kappa_bytes = int(np.prod(shape)) * 4
    row_bound = int(kappa_bytes * (1 + _ENCODING_MARGIN)) + _ROW_EXTRA_BYTES
    # one row group per row at worst: rows * (row + group footer) + footer <= max
    rows_per_shard = (max_shard_bytes - _FOOTER_BYTES) // (row_bound + _ROW_GROUP_FOOTER_BYTES)
    if rows_per_shard < 1:
        need = row_bound + _ROW_GROUP_FOOTER_BYTES + _FOOTER_BYTES
        msg = f"max_shard_bytes {max_shard_bytes} is below one row of kappa {tuple(shape)} ({need})"
        raise ValueError(msg)
    rows_per_group = max(1, min(rows_per_shard, ROW_GROUP_TARGET_BYTES // kappa_bytes))
    return int(rows_per_shard), int(rows_per_group)


class _ShardSink:
    """Rows in, shard files of at most *rows_per_shard* rows out (``part-NNNNN.parquet``)."""

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        rows_per_shard: int,
        rows_per_group: int,
        max_bytes: int,
    ) -> None:
        self.directory = directory
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.rows_per_group = rows_per_group
        self.max_bytes = max_bytes
        self.parts: list[tuple[Path, int]] = []
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._shard_rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def __enter__(self) -> _ShardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:  # an error mid-shard: release the file, never rename it
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    def write(self, table: pa.Table) -> None:
        """Append rows; row groups and shards are cut at fixed row counts."""
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._path = self.directory / f"part-{len(self.parts):05d}.parquet"
                self._writer = pq.ParquetWriter(self._path, self.schema, **PARQUET_WRITE_OPTIONS)
            take = min(
                table.num_rows - offset,
                self.rows_per_shard - self._shard_rows - self._pending_rows,
                self.rows_per_group - self._pending_rows,
            )
            self._pending.append(table.slice(offset, take))
            self._pending_rows += take
            offset += take
            if self._pending_rows == self.rows_per_group:
                self._flush()
            if self._shard_rows + self._pending_rows == self.rows_per_shard:
                self._close_shard()

    def close(self) -> list[tuple[Path, int]]:
        """Finish the last shard; returns ``(path, rows)`` of every shard in order."""
        if self._writer is not None:
            self._close_shard()
        return self.parts

    def _flush(self) -> None:
        if self._pending_rows and self._writer is not None:
            group = pa.concat_tables(self._pending)  # chunked: no copy of the values
            self._writer.write_table(group, row_group_size=group.num_rows)
            self._shard_rows += group.num_rows
        self._pending = []
        self._pending_rows = 0

    def _close_shard(self) -> None:
        self._flush()
        assert self._writer is not None
        assert self._path is not None
        self._writer.close()
        self._writer = None
        fsync_path(self._path)
        size = self._path.stat().st_size
        if size > self.max_bytes:  # the size model is wrong: never publish an oversized shard
            msg = f"shard {self._path} has {size} bytes, above the bound {self.max_bytes}"
            raise RuntimeError(msg)
        self.parts.append((self._path, self._shard_rows))
        self._shard_rows = 0


def _name_shards(parts: list[tuple[Path, int]], out_dir: Path) -> list[ShardFile]:
    """Rename ``part-i`` to ``train-i-of-n``; return the files as they will be in *out_dir*."""
    shards = []
    for index, (part, rows) in enumerate(parts):
        named = part.with_name(ShardSet.shard_name(index, len(parts)))
        part.rename(named)
        shards.append(
            ShardFile(out_dir / named.name, rows, named.stat().st_size, file_sha256(named))
        )
    return shards
