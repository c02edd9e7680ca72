"""Deterministic tile-level split of one configuration: compressor train / NPE train / test.

Every tile of the fiducial simulation is removed first and kept apart (the FoM is measured on
it); the remaining tiles are permuted with ``np.random.default_rng(seed)`` and cut into
70% compressor train, 25% NPE train (also the compressor's validation set) and 5% test.
The indices are table rows, so a split belongs to one row order: the shard writer's
``(sim_id, orientation_id, tile_id)`` order. A fingerprint of the per-row sim ids is saved
with the split, and :meth:`Split.check_rows` refuses a table it was not made for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensing_core.io import InputMissingError, write_json
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID

logger = logging.getLogger(__name__)

#: Fractions of the non-fiducial tiles in each split, in :data:`SPLIT_NAMES` order.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.70, 0.25, 0.05)
#: The three training splits, in the order of the fractions.
SPLIT_NAMES: tuple[str, str, str] = ("compressor_train", "npe_train", "test")
_FORMAT = 1
_INDEX_NAMES = (*SPLIT_NAMES, "fiducial")


def _index_array(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    out = np.array(values, dtype=np.int64).reshape(-1)
    out.flags.writeable = False
    return out


def sim_ids_sha256(sim_ids: npt.ArrayLike) -> str:
    """Fingerprint of the per-row sim ids (row order included)."""
    return hashlib.sha256(np.asarray(sim_ids, dtype="<i8").tobytes()).hexdigest()


@dataclass(frozen=True, eq=False)
class Split:
    """
    Row indices of the splits of one configuration (sorted, read-only int64 arrays).

    Attributes
    ----------
    compressor_train
        Rows the compressor is trained on (and the only rows the normalisation sees).
    npe_train
        Rows the NPE is trained on; the compressor's validation set.
    test
        Held-out rows: NPE early stopping, calibration and the test FoM.
    fiducial
        Every row of the fiducial sim, in none of the other splits.
    n_rows
        Rows of the table the split was made for.
    seed, fractions, fiducial_sim_id
        What made the split.
    sim_ids_sha256
        :func:`sim_ids_sha256` of the table's per-row sim ids.
    """

    compressor_train: npt.NDArray[np.int64]
    npe_train: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    fiducial: npt.NDArray[np.int64]
    n_rows: int
    seed: int = 42
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    fiducial_sim_id: int = FIDUCIAL_SIM_ID
    sim_ids_sha256: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in _INDEX_NAMES:
            object.__setattr__(self, name, _index_array(getattr(self, name)))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name))}" for name in _INDEX_NAMES)
        return f"Split({sizes}, n_rows={self.n_rows}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def sizes(self) -> dict[str, int]:
        """Number of rows of each split, fiducial included."""
        return {name: len(getattr(self, name)) for name in _INDEX_NAMES}

    def check_rows(self, sim_ids: npt.ArrayLike, *, what: str = "table") -> None:
        """
        Raise ``ValueError`` unless *sim_ids* are the per-row sim ids this split was made for.

        Parameters
        ----------
        sim_ids
            Sim id of each row of the table about to be used with this split.
        what
            How to name the table in the message (a configuration, a file).
        """
        sim_ids = np.asarray(sim_ids)
        if len(sim_ids) != self.n_rows:
            msg = f"split made for {self.n_rows} rows, but the {what} has {len(sim_ids)} rows"
            raise ValueError(msg)
        if self.sim_ids_sha256 and sim_ids_sha256(sim_ids) != self.sim_ids_sha256:
            msg = (
                f"split made for another row order or set of sims than the {what} "
                f"({self.n_rows} rows, sim-id fingerprint differs)"
            )
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (indices as lists)."""
        return {
            "format": _FORMAT,
            "n_rows": int(self.n_rows),
            "seed": int(self.seed),
            "fractions": list(self.fractions),
            "fiducial_sim_id": int(self.fiducial_sim_id),
            "sim_ids_sha256": self.sim_ids_sha256,
            **{name: getattr(self, name).tolist() for name in _INDEX_NAMES},
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Split:
        """Inverse of :meth:`to_dict`, checking that the splits are disjoint and in range."""
        if record.get("format") != _FORMAT:
            raise ValueError(f"split format {record.get('format')!r}, expected {_FORMAT}")
        missing = [k for k in (*_INDEX_NAMES, "n_rows", "seed", "fractions") if k not in record]
        if missing:
            raise ValueError(f"split record lacks {missing}")
        split = cls(
            **{name: record[name] for name in _INDEX_NAMES},
            n_rows=int(record["n_rows"]),
            seed=int(record["seed"]),
            fractions=tuple(record["fractions"]),
            fiducial_sim_id=int(record.get("fiducial_sim_id", FIDUCIAL_SIM_ID)),
            sim_ids_sha256=str(record.get("sim_ids_sha256", "")),
        )
        every = np.concatenate([getattr(split, name) for name in _INDEX_NAMES])
        if len(np.unique(every)) != len(every):
            raise ValueError("split indices overlap between splits")
        if len(every) and (every.min() < 0 or every.max() >= split.n_rows):
            raise ValueError(f"split indices outside [0, {split.n_rows})")
        return split


def _sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    # rounding the first two and giving the rest to the third keeps each within one tile
    n_train = round(fractions[0] * n)
    n_npe = round(fractions[1] * n)
    return n_train, n_npe, n - n_train - n_npe


def min_tiles_for(fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> int:
    """Smallest number of non-fiducial tiles giving every split at least one tile."""
    n = 3
    while min(_sizes(n, fractions)) < 1:
        n += 1
    return n


def make_split(
    sim_ids: npt.ArrayLike,
    *,
    seed: int = 42,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    fiducial_sim_id: int = FIDUCIAL_SIM_ID,
) -> Split:
    """
    Deterministic tile-level split, the fiducial sim held out.

    Parameters
    ----------
    sim_ids
        Sim id of each table row, shape ``(n_rows,)``.
    seed
        Seed of the permutation of the non-fiducial rows.
    fractions
        Fractions of the non-fiducial rows for compressor train, NPE train and test; each
        split's size is within one tile of its fraction.
    fiducial_sim_id
        Sim whose tiles go to ``fiducial`` only.

    Returns
    -------
        The split; indices sorted within each split.

    Raises
    ------
    ValueError
        Fractions not positive or not summing to 1, or too few non-fiducial tiles for every
        split to get one (the message gives both numbers).
    """
    sim_ids = np.asarray(sim_ids)
    if sim_ids.ndim != 1:
        raise ValueError(f"expected sim_ids of shape (n_rows,), got {sim_ids.shape}")
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {fractions}")
    is_fiducial = sim_ids == fiducial_sim_id
    pool = np.flatnonzero(~is_fiducial)
    n_min = min_tiles_for(fractions)
    if len(pool) < n_min:
        msg = (
            f"too few tiles for a {'/'.join(f'{f:g}' for f in fractions)} split: "
            f"{len(pool)} tiles outside the fiducial sim {fiducial_sim_id}, need at least {n_min}"
        )
        raise ValueError(msg)
    if not is_fiducial.any():
        logger.warning(
            "no tile of the fiducial sim %d among %d rows", fiducial_sim_id, len(sim_ids)
        )
    order = np.random.default_rng(seed).permutation(pool)
    n_train, n_npe, _ = _sizes(len(pool), fractions)
    return Split(
        compressor_train=np.sort(order[:n_train]),
        npe_train=np.sort(order[n_train : n_train + n_npe]),
        test=np.sort(order[n_train + n_npe :]),
        fiducial=np.flatnonzero(is_fiducial),
        n_rows=len(sim_ids),
        seed=seed,
        fractions=fractions,
        fiducial_sim_id=fiducial_sim_id,
        sim_ids_sha256=sim_ids_sha256(sim_ids),
    )


def save_split(split: Split, path: Path, *, tmp_root: Path | None = None) -> Path:
    """
    Write *split* to *path* as JSON, atomically.

    Parameters
    ----------
    split
        The split.
    path
        Destination (``split.json``).
    tmp_root
        Directory for the temporary file, on the file system of *path*; its parent if not
        given.

    Returns
    -------
        *path*.
    """
    path = Path(path)
    return write_json(path, split.to_dict(), tmp_root=tmp_root or path.parent, indent=None)


def load_split(path: Path) -> Split:
    """
    Read a split written by :func:`save_split`.

    Raises
    ------
    InputMissingError
        *path* does not exist (a ``FileNotFoundError``).
    ValueError
        It is not a valid split file (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputMissingError(f"split file {path} does not exist")
    try:
        return Split.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"split file {path} is not a valid split: {err}") from None
