"""Files: atomic writers, checked readers, content hashes.

Every file the platform writes goes through one of the writers here: a temporary file in a
``tmp_root`` on the same file system (never where readers look), flushed and fsynced, then
renamed onto its final name, so a reader sees the old file or the whole new one. A directory
of files (a shard set) is built in a staging directory and swapped into place in one step.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

TMP_DIR_NAME = ".tmp"

logger = logging.getLogger(__name__)

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


class InputMissingError(FileNotFoundError):
    """An input file of a partition does not exist (upstream not materialized)."""


# --- single files -------------------------------------------------------------------------


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

    Notes
    -----
    For writers that need a file name (``np.memmap``, a library's ``save(path)``); they must
    flush the file themselves. :func:`atomic_open` also fsyncs.
    """
    final = Path(final)
    tmp_root = Path(tmp_root)
    tmp_root.mkdir(parents=True, exist_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex}.partial"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(
    final: Path, mode: Literal["wb", "w"] = "wb", *, tmp_root: Path
) -> Iterator[IO[Any]]:
    """
    Open a temporary file for writing; on success fsync it and rename it to *final*.

    Parameters
    ----------
    final, tmp_root
        As :func:`atomic_path`.
    mode
        ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).
    """
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(final, tmp_root=tmp_root) as tmp, tmp.open(mode, encoding=encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(final: Path, data: bytes, *, tmp_root: Path) -> Path:
    """Write *data* to *final* atomically; returns *final*."""
    with atomic_open(final, "wb", tmp_root=tmp_root) as handle:
        handle.write(data)
    return Path(final)


def write_text(final: Path, text: str, *, tmp_root: Path) -> Path:
    """Write *text* (UTF-8) to *final* atomically; returns *final*."""
    with atomic_open(final, "w", tmp_root=tmp_root) as handle:
        handle.write(text)
    return Path(final)


def write_json(
    final: Path,
    record: Mapping[str, Any],
    *,
    tmp_root: Path,
    indent: int | None = 2,
    sort_keys: bool = False,
) -> Path:
    """
    Write *record* as JSON to *final* atomically; returns *final*.

    Raises
    ------
    ValueError
        The record holds a NaN or infinity, or a value JSON cannot hold (the message names
        *final*); nothing is written then.
    """
    try:
        text = json.dumps(dict(record), indent=indent, sort_keys=sort_keys, allow_nan=False)
    except (TypeError, ValueError) as err:
        msg = f"the record for {final} is not JSON-ready: {err}"
        raise ValueError(msg) from None
    return write_text(final, text + "\n", tmp_root=tmp_root)


def write_npz(
    final: Path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, Any], *, tmp_root: Path
) -> Path:
    """Write *arrays* plus ``metadata`` (JSON text) to *final* atomically, uncompressed."""
    record: dict[str, Any] = {**arrays, "metadata": np.array(json.dumps(metadata, sort_keys=True))}
    with atomic_open(final, "wb", tmp_root=tmp_root) as handle:
        np.savez(handle, **record)
    return Path(final)


def fsync_path(path: Path) -> None:
    """Flush a file or a directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- directories --------------------------------------------------------------------------


def staging_dir(tmp_root: Path, name: str) -> Path:
    """
    A new empty directory ``{tmp_root}/{name}.{pid}.{uuid}`` to build a directory in.

    :func:`remove_stale_staging` deletes those of processes that no longer run; finish
    with :func:`swap_directory`.
    """
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = tmp_root / f"{name}.{os.getpid()}.{uuid.uuid4().hex}"
    staging.mkdir()
    return staging


def remove_stale_staging(tmp_root: Path, name: str) -> list[str]:
    """Delete the ``{name}.{pid}.*`` staging directories left by processes that no longer run."""
    removed = []
    for path in sorted(tmp_root.glob(f"{name}.*")):
        pid_text = path.name.removeprefix(f"{name}.").split(".")[0]
        if not pid_text.isdigit() or not path.is_dir():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or pid_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
        logger.info("removed %s, left by a killed run", path)
    return removed


def swap_directory(staging: Path, final: Path) -> None:
    """
    Make the complete directory *staging* appear at *final*, replacing what was there.

    Every file in *staging* should be fsynced before; *staging* itself is fsynced here.
    ``renameat2(RENAME_EXCHANGE)`` swaps the two directories atomically (Linux), after which
    the previous content, now under the staging name, is deleted. Where the exchange is not
    supported, *final* is renamed aside and *staging* renamed onto it: a reader may briefly
    find no directory, never a partial one.

    Raises
    ------
    ValueError
        *final* exists and is not a directory.
    """
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        msg = f"{final} exists and is not a directory; refusing to replace it"
        raise ValueError(msg)
    fsync_path(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not final.exists():
        os.rename(staging, final)
    elif _rename_exchange(staging, final):
        shutil.rmtree(staging)  # the previous content, now under the staging name
    else:
        retired = staging.with_name(staging.name + ".old")
        os.rename(final, retired)
        os.rename(staging, final)
        shutil.rmtree(retired)
    fsync_path(final.parent)


def pid_alive(pid: int) -> bool:
    """Whether a process *pid* exists on this machine (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@lru_cache(maxsize=1)
def _renameat2() -> Any:
    """The C library's ``renameat2`` (Linux, glibc >= 2.28), or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths; ``False`` where the system or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


# --- reading ------------------------------------------------------------------------------


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


def read_record(path: Path, keys: Sequence[str], *, what: str) -> dict[str, Any]:
    """
    Read a JSON object written by :func:`write_json` that must hold *keys*.

    Parameters
    ----------
    path
        File to read.
    keys
        Keys the object must have.
    what
        How to name the content in errors, e.g. ``"FoM result"``.

    Raises
    ------
    InputMissingError
        If the file does not exist.
    ValueError
        If it is not valid JSON, not an object, or lacks one of *keys* (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"{what} is missing: {path} does not exist")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is truncated or corrupt ({err})") from None
    if not isinstance(record, dict):
        msg = f"{what} {path} holds a {type(record).__name__}, expected a JSON object"
        raise ValueError(msg)
    missing = [key for key in keys if key not in record]
    if missing:
        raise ValueError(f"{what} {path} lacks {missing}")
    return record


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
        write_json(
            self.path,
            self._entries,
            tmp_root=self.tmp_root or self.path.parent,
            indent=None,
            sort_keys=True,
        )
        self._dirty = False
