"""Fast tile loader: parquet shards -> one ``(tiles, theta)`` array pair -> numpy/torch batches.

A configuration's shards (``data/lmax_600_des_y3/train-*.parquet``) are decoded once into a
:class:`TileTable` whose ``tiles`` is a single ``(n_tiles, n_bins, n_pix, n_pix)`` float32
array. Batches are then one fancy-index gather each, never a Python loop over rows.

Two ways to open a configuration (``cache_dir``):

* ``cache_dir=None``: read the parquet shards one at a time (``pq.read_table(memory_map=True,
  use_threads=True)``) and copy each decoded chunk once into one array in RAM (peak memory:
  all tiles plus one decoded shard). A single shard decoded as a single chunk is used as a
  zero-copy view instead.
* ``cache_dir=path``: on first use, convert the shards (streaming, one shard in memory at a
  time, through a scratch file as large as the tiles) to one uncompressed Arrow IPC file
  holding a single record batch; every later open memory-maps it (``pa.memory_map``), so
  ``tiles`` is a zero-copy view of the page cache: opening costs milliseconds instead of a
  full parquet decode, several processes (DataLoader workers, one training run per
  configuration) share the same pages, and a configuration larger than RAM still works.

Why the cache exists: parquet stores the nested ``kappa`` lists with repetition/definition
levels per float, so decoding is slow. Measured by ``bench/bench_loader.py`` (2048 random
tiles of 4 x 256 x 256, 8 shards of 256 MiB, 2 cores): parquet open 230-300 tiles/s
(7-9 s), cache build 150-220 tiles/s (9-14 s, once), cache open < 10 ms; shuffled batches
of 64 then run at 5000-7900 tiles/s (5-8 GiB/s) from either, against 110-135 tiles/s for
``datasets`` row access ``ds[i]["kappa"]``. Parquet decoding is thus about the rate one GPU
consumes tiles: decode once per process, or once per machine with the cache, never per epoch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from lensing_core.dataset import schema
from lensing_core.dataset.schema import KAPPA_COLUMN
from lensing_core.io import atomic_path
from lensing_core.sims.catalog import PARAM_NAMES

logger = logging.getLogger(__name__)

ID_COLUMNS: tuple[str, ...] = (*schema.ID_COLUMNS, "noise_level")
_CACHE_FORMAT = 1  # bump when the cache file layout changes

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, eq=False, repr=False)
class TileTable:
    """
    The tiles of one configuration with their parameters and ids, rows in shard order.

    Attributes
    ----------
    tiles
        Read-only float32 array, shape ``(n_tiles, n_bins, n_pix, n_pix)`` (channel first).
        One contiguous buffer: a view of the Arrow data where possible, else one array built
        with one copy per Arrow chunk.
    theta
        Parameters, shape ``(n_tiles, n_params)``, columns in the order of ``param_names``.
    param_names
        Parameter column names.
    columns
        Other requested columns (``sim_id``, ``tile_id``, ...) as 1-d arrays of length
        ``n_tiles``.
    shard_paths
        The parquet shards, in the order their rows appear.
    cache_path
        The memory-mapped Arrow IPC file behind ``tiles``, or None when read from parquet.
    """

    tiles: npt.NDArray[np.float32]
    theta: npt.NDArray[np.floating]
    param_names: tuple[str, ...]
    columns: Mapping[str, np.ndarray]
    shard_paths: tuple[Path, ...]
    cache_path: Path | None = None
    _open_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return self.tiles.shape[0]

    def __repr__(self) -> str:
        source = self.cache_path or (self.shard_paths[0].parent if self.shard_paths else None)
        return (
            f"TileTable({len(self)} tiles of {self.tile_shape}, theta {self.param_names}, "
            f"{len(self.shard_paths)} shards, from {source})"
        )

    @property
    def tile_shape(self) -> tuple[int, int, int]:
        """``(n_bins, n_pix, n_pix)`` of one tile."""
        return self.tiles.shape[1:]

    @functools.cached_property
    def realization_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """
        ``(n_tiles, R)`` rows of each tile by noise realisation, and the tile of each row.

        Needs the ``noise_realization``, ``sim_id``, ``orientation_id`` and ``tile_id``
        columns; see :func:`realization_rows`.
        """
        return realization_groups_of(self.columns, what=repr(self))

    @property
    def sim_id(self) -> np.ndarray:
        """Simulation id of each tile, shape ``(n_tiles,)``."""
        return self.columns["sim_id"]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Spawned DataLoader workers re-open the shards (cheap with a cache: a memory map)
        # instead of receiving gigabytes of tiles through a pipe.
        return functools.partial(load_tiles, **self._open_kwargs), (self.shard_paths,)


class TileBatch(NamedTuple):
    """A batch: ``tiles`` ``(batch, n_bins, n_pix, n_pix)`` and ``theta`` ``(batch, n_params)``."""

    tiles: Any
    theta: Any


def load_tiles(
    source: PathLike | Sequence[PathLike],
    *,
    params: Sequence[str] = PARAM_NAMES,
    columns: Sequence[str] = ID_COLUMNS,
    theta_dtype: npt.DTypeLike = np.float64,
    tile_shape: tuple[int, int, int] | None = None,
    cache_dir: PathLike | None = None,
    pattern: str = "*.parquet",
) -> TileTable:
    """
    Open the tile shards of one configuration.

    Parameters
    ----------
    source
        A configuration directory (its files matching *pattern*, sorted by name, hidden and
        ``_``-prefixed files skipped), one parquet file or a sequence of files (order kept).
    params
        Parameter columns stacked into ``theta``, in this order.
    columns
        Further columns returned in :attr:`TileTable.columns`.
    theta_dtype
        dtype of ``theta`` (float32 for training; float64 keeps the stored values exactly).
    tile_shape
        Expected ``(n_bins, n_pix, n_pix)``; by default the first shard's shape, which every
        other shard must match.
    cache_dir
        If given, the shards are converted once to an uncompressed Arrow IPC file in this
        directory (named by a hash of the shard paths, sizes and modification times) and
        ``tiles`` is a memory-mapped view of it. A stale cache is never reused, but it is
        not deleted either.
    pattern
        Glob selecting the shards in a directory *source*.

    Returns
    -------
        The tiles in shard order, row order within a shard.

    Raises
    ------
    FileNotFoundError
        *source* does not exist or holds no shard.
    ValueError
        A shard cannot be read, lacks a column, or its ``kappa`` is not a regular
        ``(n_bins, n_pix, n_pix)`` array without nulls (the message names the file).
    TypeError
        A shard's ``kappa`` values are not float32.
    """
    start = time.perf_counter()
    paths = _shard_paths(source, pattern)
    params, columns = tuple(params), tuple(c for c in columns if c not in params)
    required = (KAPPA_COLUMN, *params, *columns)
    open_kwargs = {
        "params": params,
        "columns": columns,
        "theta_dtype": theta_dtype,
        "tile_shape": tile_shape,
        "cache_dir": cache_dir,
    }
    n_rows = sum(_check_shard(path, required) for path in paths)
    if n_rows == 0:
        raise ValueError(f"tile shards hold no rows: {[str(p) for p in paths]}")
    cache_path = None
    if cache_dir is None:
        pieces = ((path, _read_parquet(path, required)) for path in paths)
        tiles, others = _collect(pieces, n_rows, tile_shape, params)
    else:
        cache_path = _cache_file(paths, Path(cache_dir))
        if not cache_path.exists():
            _write_cache(paths, n_rows, tile_shape, params, cache_path)
        tiles, others = _open_cache(cache_path, n_rows, tile_shape, params)
    theta = np.column_stack([others.column(p).to_numpy() for p in params]).astype(theta_dtype)
    table = TileTable(
        tiles=tiles,
        theta=theta,
        param_names=params,
        columns={c: others.column(c).to_numpy() for c in columns},
        shard_paths=paths,
        cache_path=cache_path,
        _open_kwargs=open_kwargs,
    )
    logger.info(
        "opened %d tiles %s from %d shards%s in %.2f s",
        len(table),
        table.tile_shape,
        len(paths),
        f" (cache {cache_path})" if cache_path else "",
        time.perf_counter() - start,
    )
    return table


def iter_batches(
    table: TileTable,
    batch_size: int,
    *,
    indices: npt.ArrayLike | None = None,
    shuffle: bool = False,
    rng: np.random.Generator | None = None,
    as_torch: bool = False,
    drop_last: bool = False,
) -> Iterator[TileBatch]:
    """
    One pass over (a subset of) a table in batches.

    Parameters
    ----------
    table
        The tiles to read.
    batch_size
        Tiles per batch; the last batch is smaller unless *drop_last*.
    indices
        Rows to visit (a split); all rows if not given.
    shuffle
        Visit the rows in the order of ``rng.permutation(indices)``.
    rng
        Generator for the shuffle, required when *shuffle*.
    as_torch
        Yield torch tensors (sharing memory with the gathered numpy batch) instead of numpy.
    drop_last
        Skip a last batch smaller than *batch_size*.

    Yields
    ------
        ``TileBatch(tiles, theta)``: fresh C-contiguous arrays of shape
        ``(batch, n_bins, n_pix, n_pix)`` float32 and ``(batch, n_params)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = _check_indices(indices, len(table))
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs rng (a np.random.Generator)")
        order = rng.permutation(order)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for first in range(0, stop, batch_size):
        batch = _gather(table, order[first : first + batch_size])
        yield TileBatch(*map(torch.from_numpy, batch)) if as_torch else batch


class TileDataset(Dataset):
    """
    Map-style torch dataset over rows of a :class:`TileTable`, indexed by whole batches.

    ``dataset[i]`` is one ``(tile, theta)`` pair; ``dataset[list_of_i]`` and
    ``dataset.__getitems__(list_of_i)`` are one :class:`TileBatch` gathered in one go.
    Position ``i`` is row ``indices[i]`` of the table.

    Parameters
    ----------
    table
        The tiles.
    indices
        Table rows making up this dataset (a split); all rows if not given.

    Notes
    -----
    Let the sampler yield lists of indices and turn off the DataLoader's own batching, so that
    every batch is one gather (this is what :func:`tile_dataloader` builds)::

        sampler = BatchSampler(RandomSampler(ds, generator=torch_generator), 64, drop_last=False)
        loader = DataLoader(ds, sampler=sampler, batch_size=None)

    In a ``LightningDataModule``, return such loaders from ``train_dataloader`` and
    ``val_dataloader``. With several devices, Lightning's own sampler replacement would
    split the data tile by tile; use ``Trainer(use_distributed_sampler=False)`` and put a
    ``DistributedSampler(ds, shuffle=True, seed=...)`` inside the ``BatchSampler`` instead
    (calling its ``set_epoch`` each epoch).
    ``num_workers=0`` is usually enough: a batch of 64 tiles of 256 x 256 x 4 is a ~64 MB
    memcpy (see the benchmark). Workers started by fork share the tiles; spawned ones
    re-open the shards, which is cheap only with a ``cache_dir``.
    ``DataLoader(ds, batch_size=64)`` also works through ``__getitems__`` but then needs
    ``collate_fn`` returning its argument unchanged, since the default collate would stack the
    two tensors of the batch.
    """

    def __init__(self, table: TileTable, indices: npt.ArrayLike | None = None) -> None:
        self.table = table
        self.indices = _check_indices(indices, len(table))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int | Sequence[int] | npt.NDArray[np.integer]) -> TileBatch:
        if np.ndim(index) == 0:
            row = self.indices[index]
            # copies: the table's arrays are read-only and torch wants writable memory
            return TileBatch(
                torch.from_numpy(self.table.tiles[row].copy()),
                torch.from_numpy(self.table.theta[row].copy()),
            )
        return self.__getitems__(np.asarray(index))

    def __getitems__(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> TileBatch:
        """One batch of the dataset positions *indices*, one gather per array."""
        batch = _gather(self.table, self.indices[np.asarray(indices, dtype=np.int64)])
        return TileBatch(*map(torch.from_numpy, batch))


def tile_dataloader(
    dataset: TileDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    **loader_kwargs: Any,
) -> DataLoader:
    """
    DataLoader yielding :class:`TileBatch` es of torch tensors, one gather per batch.

    Parameters
    ----------
    dataset
        The tiles of one split.
    batch_size
        Tiles per batch.
    shuffle
        Reshuffle every epoch with *generator*.
    generator
        Seeded ``torch.Generator``, required when *shuffle*.
    drop_last
        Skip a last batch smaller than *batch_size*.
    **loader_kwargs
        Passed to ``DataLoader`` (``num_workers``, ``pin_memory``, ...).

    Returns
    -------
        ``DataLoader(dataset, sampler=BatchSampler(...), batch_size=None, ...)``.
    """
    if shuffle and generator is None:
        raise ValueError("shuffle=True needs a torch.Generator")
    inner = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    sampler = BatchSampler(inner, batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=sampler, batch_size=None, **loader_kwargs)


def realization_groups_of(
    columns: Mapping[str, npt.ArrayLike], *, what: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """
    ``(n_tiles, R)`` rows of each tile by noise realisation, and the tile of each row.

    Parameters
    ----------
    columns
        ``sim_id``, ``orientation_id``, ``tile_id`` and ``noise_realization`` of each row,
        each ``(n_rows,)``: a tile is one (sim, orientation, tile).
    what
        The rows' owner, for the error.

    Raises
    ------
    ValueError
        Tiles with other realisations than ``0 .. R-1`` exactly once each.
    """
    cols = columns
    tile = np.unique(
        np.stack([cols["sim_id"], cols["orientation_id"], cols["tile_id"]], axis=1),
        axis=0,
        return_inverse=True,
    )[1].reshape(-1)
    real = np.asarray(cols["noise_realization"], dtype=np.int64)
    order = np.lexsort((real, tile))
    n_tiles = int(tile.max()) + 1 if len(tile) else 0
    counts = np.bincount(tile, minlength=n_tiles)
    n_real = int(counts[0]) if n_tiles else 1
    groups = order.reshape(n_tiles, n_real) if np.all(counts == n_real) else None
    if groups is None or not np.array_equal(
        real[groups], np.broadcast_to(np.arange(n_real), groups.shape)
    ):
        msg = (
            f"{what}: tiles with other realisations than 0 .. R-1 once each "
            f"(realisations per tile: {sorted(set(counts.tolist()))})"
        )
        raise ValueError(msg)
    return groups, tile


def realization_rows(table: TileTable, rows: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """
    The rows of every noise realisation of the tiles at *rows*.

    Parameters
    ----------
    table
        The tiles; its ``noise_realization`` column (if it has one) says which realisation
        each row holds, and ``(sim_id, orientation_id, tile_id)`` which tile.
    rows
        One row of each tile wanted (any realisation), shape ``(n,)``.

    Returns
    -------
        ``(n, R)`` table rows, column ``r`` holding realisation ``r`` of the tile of
        ``rows[i]``. Without a ``noise_realization`` column, ``rows[:, None]``.

    Raises
    ------
    ValueError
        The tiles do not all have the realisations ``0 .. R - 1`` exactly once.
    """
    rows = _check_indices(rows, len(table))
    if "noise_realization" not in table.columns:
        return rows[:, None]
    groups, tile = table.realization_groups
    return groups[tile[rows]]


class RealizationBatchSampler(Sampler[list[int]]):
    """
    Shuffled batches of tiles, each tile in a noise realisation drawn anew every epoch.

    Parameters
    ----------
    groups
        ``(n_tiles, R)`` table rows (:func:`realization_rows`): one line per tile.
    batch_size
        Tiles per batch.
    generator
        Seeded ``torch.Generator`` of the order and of the realisations.
    drop_last
        Skip a last batch smaller than *batch_size*.

    Notes
    -----
    Each epoch is ``torch.randperm(n_tiles)`` then one ``torch.randint(R, (n_tiles,))`` draw.
    With one realisation the batches are exactly those of
    ``BatchSampler(RandomSampler(..., generator), ...)``, the loader of earlier versions, so
    runs with ``noise_realizations=1`` replay them.
    """

    def __init__(
        self,
        groups: npt.ArrayLike,
        batch_size: int,
        *,
        generator: torch.Generator,
        drop_last: bool = False,
    ) -> None:
        self.groups = np.asarray(groups, dtype=np.int64)
        if self.groups.ndim != 2 or self.groups.shape[1] < 1:
            raise ValueError(f"groups must be (n_tiles, R), got {self.groups.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.groups)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n, n_real = self.groups.shape
        if n_real == 1:  # exactly the batches (and generator use) of the earlier loader
            inner = RandomSampler(range(n), generator=self.generator)
            for batch in BatchSampler(inner, self.batch_size, drop_last=self.drop_last):
                yield self.groups[batch, 0].tolist()
            return
        order = torch.randperm(n, generator=self.generator).numpy()
        picks = torch.randint(n_real, (n,), generator=self.generator).numpy()
        rows = self.groups[order, picks]
        stop = n - n % self.batch_size if self.drop_last else n
        for first in range(0, stop, self.batch_size):
            yield rows[first : first + self.batch_size].tolist()


def _gather(table: TileTable, rows: np.ndarray) -> TileBatch:
    # one fancy-index gather per array: a contiguous copy of just these rows
    return TileBatch(table.tiles[rows], table.theta[rows])


def _check_indices(indices: npt.ArrayLike | None, n_rows: int) -> npt.NDArray[np.int64]:
    if indices is None:
        return np.arange(n_rows, dtype=np.int64)
    out = np.asarray(indices)
    if out.ndim != 1 or (out.size and not np.issubdtype(out.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-d integer array, got {out.dtype} {out.shape}")
    out = out.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= n_rows):
        raise ValueError(
            f"indices must lie in [0, {n_rows}), got [{out.min()}, {out.max()}] for a table of "
            f"{n_rows} rows"
        )
    return out


def _shard_paths(source: PathLike | Sequence[PathLike], pattern: str) -> tuple[Path, ...]:
    if isinstance(source, str | os.PathLike):
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"no tile shards: {root} does not exist")
        if root.is_file():
            return (root,)
        paths = tuple(
            p for p in sorted(root.glob(pattern)) if p.is_file() and p.name[0] not in "._"
        )
        if not paths:
            raise FileNotFoundError(f"no tile shards matching {pattern!r} in {root}")
        return paths
    paths = tuple(Path(p) for p in source)
    if not paths:
        raise FileNotFoundError("no tile shards: empty list of files")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"tile shard {path} does not exist")
    return paths


def _check_shard(path: Path, required: Sequence[str]) -> int:
    """Number of rows of a shard, after checking that it has the *required* columns."""
    try:
        meta = pq.read_metadata(path)
        names = meta.schema.to_arrow_schema().names
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"cannot read tile shard {path}: {err}") from err
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"tile shard {path} lacks columns {missing} (has {names})")
    return meta.num_rows


def _read_parquet(path: Path, columns: Sequence[str] | None) -> pa.Table:
    try:
        cols = None if columns is None else list(columns)
        return pq.read_table(path, columns=cols, memory_map=True, use_threads=True)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"cannot read tile shard {path}: {err}") from err


def _collect(
    pieces: Iterator[tuple[Path, pa.Table]],
    n_rows: int,
    tile_shape: tuple[int, ...] | None,
    params: Sequence[str],
    alloc: Callable[[tuple[int, ...]], np.ndarray] | None = None,
) -> tuple[np.ndarray, pa.Table]:
    """
    All tiles as one array and the other columns as one table.

    Each Arrow chunk is copied once into ``alloc((n_rows, n_bins, n_pix, n_pix))``, except
    that without *alloc* a single chunk holding every row is returned as a zero-copy view
    (and several chunks are copied into a new array).
    """
    others, pos, tiles = [], 0, None
    for path, table in pieces:
        for p in params:
            if table.column(p).null_count:
                raise ValueError(f"tile shard {path}: parameter {p} has null values")
        for chunk in table.column(KAPPA_COLUMN).chunks:
            if len(chunk) == 0:
                continue
            if pos + len(chunk) > n_rows:
                raise ValueError(f"tile shard {path}: more rows than its metadata says")
            leaf, shape = schema.kappa_leaves(chunk, what=f"tile shard {path}")
            if tile_shape is None:
                tile_shape = shape
            elif shape != tuple(tile_shape):
                raise ValueError(
                    f"tile shard {path}: kappa rows have shape {shape}, expected {tile_shape}"
                )
            # (rows * n_bins * n_pix * n_pix,) -> (rows, n_bins, n_pix, n_pix)
            flat = leaf.to_numpy(zero_copy_only=True).reshape(len(chunk), *shape)
            if tiles is None and alloc is None and len(chunk) == n_rows:
                tiles = flat
            else:
                if tiles is None:
                    tiles = (alloc or _empty)((n_rows, *shape))
                tiles[pos : pos + len(chunk)] = flat
            pos += len(chunk)
        others.append(table.drop_columns([KAPPA_COLUMN]))
    if pos != n_rows or tiles is None:
        raise ValueError(f"tile shards hold {pos} tiles but their metadata says {n_rows}")
    tiles.flags.writeable = False
    return tiles, pa.concat_tables(others, promote_options="permissive")


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, np.float32)


def _cache_file(paths: Sequence[Path], cache_dir: Path) -> Path:
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    key = hashlib.sha256(json.dumps([_CACHE_FORMAT, stats]).encode()).hexdigest()[:20]
    return cache_dir / f"tiles-{key}.arrow"


def _nested(values: pa.Array, shape: Sequence[int]) -> pa.Array:
    # (rows * n_bins * n_pix * n_pix,) -> fixed_size_list x 3, innermost level first
    for size in reversed(shape):
        values = pa.FixedSizeListArray.from_arrays(values, size)
    return values


def _write_cache(
    paths: Sequence[Path],
    n_rows: int,
    tile_shape: tuple[int, ...] | None,
    params: Sequence[str],
    dest: Path,
) -> None:
    """Convert the shards to one single-batch Arrow IPC file, one shard in memory at a time."""
    start = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the tiles are gathered in a raw memory-mapped scratch file, then written as one record
    # batch: memory stays bounded while the cache gets a single contiguous kappa buffer
    with (
        tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".raw-", suffix=".tmp") as raw,
        atomic_path(dest, tmp_root=dest.parent) as out_path,
    ):

        def alloc(shape: tuple[int, ...]) -> np.ndarray:
            return np.memmap(raw.name, np.float32, "w+", shape=shape)

        pieces = ((path, _read_parquet(path, None)) for path in paths)
        tiles, others = _collect(pieces, n_rows, tile_shape, params, alloc)
        assert isinstance(tiles, np.memmap)  # from alloc: one chunk is never returned as a view
        tiles.flush()
        values = pa.Array.from_buffers(pa.float32(), tiles.size, [None, pa.py_buffer(tiles)])
        batch = pa.RecordBatch.from_arrays(
            [_nested(values, tiles.shape[1:]), *(c.combine_chunks() for c in others.columns)],
            names=[KAPPA_COLUMN, *others.column_names],
        )
        options = pa.ipc.IpcWriteOptions(compression=None)
        with (
            pa.OSFile(str(out_path), "wb") as sink,
            pa.ipc.new_file(sink, batch.schema, options=options) as writer,
        ):
            writer.write_batch(batch)
        del tiles, values, batch
    logger.info(
        "wrote tile cache %s (%d tiles, %.0f MB) in %.1f s",
        dest,
        n_rows,
        dest.stat().st_size / 1e6,
        time.perf_counter() - start,
    )


def _open_cache(
    path: Path, n_rows: int, tile_shape: tuple[int, ...] | None, params: Sequence[str]
) -> tuple[np.ndarray, pa.Table]:
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        table = reader.read_all()
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"cannot read tile cache {path} (delete it to rebuild): {err}") from err
    if table.num_rows != n_rows:
        raise ValueError(f"tile cache {path} holds {table.num_rows} rows, shards {n_rows}")
    return _collect(iter([(path, table)]), n_rows, tile_shape, params)
