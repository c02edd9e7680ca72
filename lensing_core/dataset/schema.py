"""What one row of the training dataset is: names, columns, types, and the kappa encoding.

One configuration per (lmax, noise level), named ``lmax_{lmax}_{noise}``; one row per tile.
The content hash of a configuration is a sha256 primed with the schema and fed the canonical
bytes of the rows in order (:data:`CONTENT_HASH_VERSION` tags that encoding). The names,
columns and types are those of :mod:`lensing_core.dataset.columns` (which imports neither
pyarrow nor ``datasets``), re-exported here.

Notes
-----
``kappa`` is stored with the Arrow extension type of ``datasets.Array3D`` (storage: nested
lists of float32, the layout ``datasets`` itself writes), and the schema carries the
``huggingface`` features metadata. ``datasets.load_dataset`` then reads the column as
``Array3D(shape=(4, n, n), dtype="float32")`` with no cast, from the files alone or through the
card's ``dataset_info``, and ``with_format("numpy")`` returns ``(rows, 4, n, n)`` float32 by
flattening the list buffers (no per-element Python conversion). A plain pyarrow reader without
``datasets`` sees the storage type ``list<list<list<float>>>``; its flattened values are the
tiles in C order. A nested ``fixed_size_list`` would also load, but only as a nested ``List``
feature unless the card supplies the features; the extension type needs neither.

``datasets``' numpy formatter hands float64 columns out as float32 and integers as int64 (its
defaults); the stored parameters are float64, exactly the catalog's values, and
``with_format("arrow")`` or ``dataset.data`` gives them unrounded.

Row order within a configuration is ``(sim_id, noise_realization, orientation_id, tile_id)``;
the row of a tile in the ``(R, 12, 4, n, n)`` tile stack of its sim is
``[noise_realization, orientation_id * 4 + tile_id]``. A noisy configuration holds ``R``
realisations of the noise of every tile (the same signal), a noiseless one only realisation 0.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import pyarrow as pa

from lensing_core.dataset.columns import (
    COLUMN_DESCRIPTIONS,
    COLUMN_DTYPES,
    COLUMNS,
    CONFIG_NAMES,
    CONTENT_HASH_VERSION,
    ID_COLUMNS,
    KAPPA_COLUMN,
    N_FACES,
    PARAM_COLUMNS,
    config_name,
    parse_config_name,
    tile_shape,
)

if TYPE_CHECKING:
    from lensing_core._types import FloatArray

__all__ = [
    "COLUMNS",
    "COLUMN_DESCRIPTIONS",
    "COLUMN_DTYPES",
    "CONFIG_NAMES",
    "CONTENT_HASH_VERSION",
    "ID_COLUMNS",
    "KAPPA_COLUMN",
    "N_FACES",
    "PARAM_COLUMNS",
    "arrow_schema",
    "config_name",
    "features",
    "kappa_leaves",
    "new_row_hash",
    "parse_config_name",
    "read_kappa",
    "tile_shape",
    "update_row_hash",
]

_ID_STRUCT = struct.Struct("<5i")  # sim_id, noise_realization, orientation_id, tile_id, lmax


def features(lmax: int) -> datasets.Features:
    """The ``datasets`` features of a configuration at band limit *lmax*, in column order."""
    columns: dict[str, Any] = {
        name: datasets.Value(dtype) for name, dtype in COLUMN_DTYPES.items() if name != "kappa"
    }
    kappa = datasets.Array3D(shape=tile_shape(lmax), dtype=COLUMN_DTYPES["kappa"])
    return datasets.Features({"kappa": kappa, **columns})


def arrow_schema(lmax: int) -> pa.Schema:
    """
    Arrow schema of the shards at band limit *lmax*.

    Returns
    -------
        ``features(lmax).arrow_schema``: ``kappa`` as the ``Array3D`` extension type and the
        ``huggingface`` features record in the schema metadata.
    """
    return features(lmax).arrow_schema


def new_row_hash(lmax: int, noise_level: str) -> hashlib._Hash:
    """
    A sha256 primed with :data:`CONTENT_HASH_VERSION`, the configuration and its columns.

    The column signature is spelled out here (names, value types, the tile shape) rather than
    taken from a library's repr, so the hash does not change with the ``datasets`` version.
    """
    shape = ",".join(map(str, tile_shape(lmax)))
    signature = ";".join(
        f"{name}:{dtype}[{shape}]" if name == "kappa" else f"{name}:{dtype}"
        for name, dtype in COLUMN_DTYPES.items()
    )
    h = hashlib.sha256()
    h.update(f"{CONTENT_HASH_VERSION}\n{config_name(lmax, noise_level)}\n{signature}\n".encode())
    return h


def update_row_hash(
    h: hashlib._Hash,
    kappa: FloatArray,
    ids: np.ndarray,
    noise_level: str,
    params: np.ndarray,
) -> None:
    """
    Feed rows, in order, into *h* in the canonical encoding of the content hash.

    Parameters
    ----------
    h
        Hash being built (see :func:`new_row_hash`).
    kappa
        Tiles of the rows, ``(rows, 4, n, n)`` float32.
    ids
        ``(rows, 5)`` integers: sim_id, noise_realization, orientation_id, tile_id, lmax.
    noise_level
        Noise level of every row.
    params
        ``(rows, 8)`` float64 in :data:`PARAM_COLUMNS` order.

    Notes
    -----
    Per row: the 5 ids as little-endian int32, the utf-8 noise level preceded by its length
    (int32), the 8 parameters as little-endian float64, then ``kappa`` as little-endian float32
    in C order. The hash therefore depends on the rows and their order only: not on the
    parquet encoding, the pyarrow version or where the shard boundaries fall.
    """
    level = noise_level.encode()
    level_bytes = struct.pack("<i", len(level)) + level
    kappa_le = np.ascontiguousarray(kappa, dtype="<f4")
    ids_le = np.asarray(ids, dtype=np.int64)
    params_le = np.asarray(params, dtype="<f8")
    for row in range(kappa_le.shape[0]):
        h.update(_ID_STRUCT.pack(*ids_le[row].tolist()))
        h.update(level_bytes)
        h.update(params_le[row].tobytes())
        h.update(memoryview(kappa_le[row]).cast("B"))


def kappa_leaves(chunk: pa.Array, *, what: str) -> tuple[pa.Array, tuple[int, ...]]:
    """
    The float32 leaf values of one chunk of nested ``kappa`` lists and the per-row shape.

    Accepts ``list``, ``large_list`` and ``fixed_size_list`` levels and extension types
    (``datasets.Array3D``) around them. The leaf array covers exactly this chunk's rows, so
    that it holds ``len(chunk) * prod(shape)`` floats back to back.

    Parameters
    ----------
    chunk
        One chunk of a ``kappa`` column.
    what
        How to name the data in errors, e.g. ``"tile shard train-00000-of-00001.parquet"``.

    Raises
    ------
    ValueError, TypeError
        Null lists or values, lists of irregular lengths, values that are not float32, or
        rows that are not ``(n_bins, n_pix, n_pix)``.
    """
    shape: list[int] = []
    arr = chunk
    while True:
        if isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
            continue
        kind = arr.type
        if not (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)
        ):
            break
        level = len(shape)
        if arr.null_count:
            raise ValueError(f"{what}: kappa has null lists at nesting level {level}")
        if pa.types.is_fixed_size_list(kind):
            size = kind.list_size
            # .values ignores the slice offset of the parent; .flatten() would too for nulls
            arr = arr.values.slice(arr.offset * size, len(arr) * size)
        else:
            offsets = arr.offsets.to_numpy()
            lengths = np.diff(offsets)
            size = int(lengths[0])
            if not np.all(lengths == size):
                raise ValueError(
                    f"{what}: kappa lists at nesting level {level} have irregular "
                    f"lengths {np.unique(lengths).tolist()}"
                )
            arr = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        shape.append(size)
    if arr.type != pa.float32():
        raise TypeError(f"{what}: kappa values must be float32, got {arr.type}")
    if arr.null_count:
        raise ValueError(f"{what}: kappa has {arr.null_count} null values")
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(
            f"{what}: kappa rows must be (n_bins, n_pix, n_pix) arrays, got shape {tuple(shape)}"
        )
    return arr, tuple(shape)


def read_kappa(column: pa.Array | pa.ChunkedArray, *, what: str = "kappa column") -> FloatArray:
    """
    The ``kappa`` column as a ``(rows, n_bins, n_pix, n_pix)`` float32 array.

    Works for the ``Array3D`` extension type and for its nested-list storage (a reader without
    ``datasets``, the loader's cache); copies only when the column has several chunks.

    Raises
    ------
    ValueError, TypeError
        As :func:`kappa_leaves`, or chunks of different tile shapes.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts: list[FloatArray] = []
    for chunk in chunks:
        leaf, shape = kappa_leaves(chunk, what=what)
        if parts and parts[0].shape[1:] != shape:
            msg = f"{what}: tiles of shapes {parts[0].shape[1:]} and {shape}"
            raise ValueError(msg)
        parts.append(leaf.to_numpy(zero_copy_only=True).reshape(len(chunk), *shape))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty((0, 0, 0, 0), dtype=np.float32)
