"""Files under the data root: atomic writes and checked readers.

Functions
---------
atomic_path
    Context manager yielding a temporary path that is renamed into place on success.
write_npz
    Write arrays and a JSON metadata record to an ``.npz`` file atomically.
read_npz
    Read an ``.npz`` written by :func:`write_npz` (or a plain one) with clear errors.
file_sha256
    Content hash of a file.

Classes
-------
FileHashCache
    SHA-256 of files, cached by size and modification time across processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TMP_DIR_NAME = ".tmp"

logger = logging.getLogger(__name__)


class InputMissingError(FileNotFoundError):
    """An input file of a partition does not exist (upstream not materialized)."""


@contextlib.contextmanager
def atomic_path(final: Path, *, tmp_root: Path) -> Iterator[Path]:
    """
    Yield a temporary path; on success rename it to *final*, on failure delete it.

    Parameters
    ----------
    final
        Destination path; its parent directories are created.
    tmp_root
        Directory on the same file system for temporaries (kept out of the data layout, so
        no half-written file is ever visible where readers look).
    """
    tmp_root.mkdir(parents=True, exist_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex}.partial"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_npz(
    final: Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], *, tmp_root: Path
) -> Path:
    """
    Write *arrays* plus ``metadata`` (JSON text) to *final* atomically, uncompressed.

    Returns
    -------
        *final*.
    """
    record = {**arrays, "metadata": np.array(json.dumps(metadata, sort_keys=True))}
    with atomic_path(final, tmp_root=tmp_root) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **record)
        handle.flush()
        os.fsync(handle.fileno())
    return final


def read_npz(
    path: Path, keys: tuple[str, ...], *, what: str, missing_hint: str = ""
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """
    Read the arrays *keys* and the JSON metadata (if any) of an ``.npz`` file.

    Parameters
    ----------
    path
        File to read.
    keys
        Array names that must be present.
    what
        How to name the content in errors, e.g. ``"kappa maps of sim 109"``.
    missing_hint
        Appended to the error when the file does not exist (e.g. the command that makes it).

    Raises
    ------
    InputMissingError
        If the file does not exist.
    ValueError
        If it is truncated or corrupt, or lacks one of *keys*.
    """
    if not path.is_file():
        msg = " ".join(filter(None, [f"{what} are missing: {path} does not exist.", missing_hint]))
        raise InputMissingError(msg)
    try:
        with np.load(path, allow_pickle=False) as npz:
            absent = [key for key in keys if key not in npz.files]
            if absent:
                msg = f"{what}: {path} lacks the arrays {absent} (has {sorted(npz.files)})"
                raise ValueError(msg)
            arrays = {key: npz[key] for key in keys}
            metadata = json.loads(str(npz["metadata"])) if "metadata" in npz.files else {}
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError) as err:
        msg = f"{what}: {path} is truncated or corrupt ({type(err).__name__}: {err})"
        raise ValueError(msg) from None
    except ValueError as err:
        if str(err).startswith(what):
            raise
        msg = f"{what}: {path} is truncated or corrupt ({err})"
        raise ValueError(msg) from None
    return arrays, metadata


def file_sha256(path: Path, *, chunk_bytes: int = 1 << 24) -> str:
    """Hex SHA-256 of a file's content, read in chunks of *chunk_bytes*."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FileHashCache:
    """
    SHA-256 of files, remembered by ``(size, mtime_ns)`` across processes.

    Parameters
    ----------
    path
        JSON file of the cache (created on :meth:`save`); ``None`` keeps it in memory only.
    tmp_root
        Directory for the atomic write of *path* (same file system).
    """

    path: Path | None = None
    tmp_root: Path | None = None
    _entries: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _dirty: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.is_file():
            try:
                self._entries = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                logger.warning("ignoring the unreadable hash cache %s", self.path)
                self._entries = {}

    def sha256(self, path: Path) -> str:
        """Hex SHA-256 of *path*'s content, read again only if its size or mtime changed."""
        stat = path.stat()
        key = str(path.resolve())
        entry = self._entries.get(key)
        if entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(entry[2])
        digest = file_sha256(path)
        self._entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache (atomically) if it changed."""
        if self.path is None or not self._dirty:
            return
        tmp_root = self.tmp_root or self.path.parent
        with atomic_path(self.path, tmp_root=tmp_root) as tmp:
            tmp.write_text(json.dumps(self._entries, sort_keys=True))
        self._dirty = False
