"""Deterministic split of one configuration into the sets that train, select and grade models.

Five sets: compressor-train, compressor-validation, NPE-train, NPE-validation and test, plus
the fiducial simulation, kept apart (the FoM is measured on it). Two kinds:

``"sim"`` (default)
    The non-fiducial sims are permuted with ``np.random.default_rng(seed)`` and cut, whole,
    into the five sets (default fractions :data:`DEFAULT_SIM_FRACTIONS`): no simulation has
    tiles in two sets, so the NPE learns the scatter of summaries of sims the compressor never
    saw, and the test set grades both on unseen sims.
``"tile"``
    The earlier published pipeline's tile-level 70/25/5 split (:data:`TILE_FRACTIONS`): tiles
    are permuted and cut into compressor-train, NPE-train and test, the NPE-train set is also
    the compressor's validation set and the test set the NPE's. Tiles of one sim land in
    several sets. Kept as a named option, to reproduce earlier numbers.

A split lists one row per tile: the rows of noise realisation 0 when the table has several
(the other realisations of a tile belong to its set and are reached through
:func:`lensing_core.dataset.loader.realization_rows`). The indices are table rows, so a split
belongs to one row order: the shard writer's ``(sim_id, noise_realization, orientation_id,
tile_id)`` order. A fingerprint of the per-row sim ids is saved with the split, and
:meth:`Split.check_rows` refuses a table it was not made for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lensing_core.io import InputMissingError, write_json
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, is_fiducial

logger = logging.getLogger(__name__)

#: The kinds of split: whole simulations per set (default) or the seed's tile-level split.
SPLIT_KINDS: tuple[str, ...] = ("sim", "tile")
#: The five sets, in the order of the fractions of a ``"sim"`` split.
SET_NAMES: tuple[str, ...] = ("compressor_train", "compressor_val", "npe_train", "npe_val", "test")
#: Fractions of the non-fiducial sims in each set of a ``"sim"`` split. The compressor, a
#: network reading whole fields, needs most of the data; a validation set needs only enough
#: sims to rank epochs and checkpoints reliably; the NPE maps 2 summaries to a Gaussian and
#: learns from fewer sims, but they must be sims the compressor never saw; the test set
#: (about 79 sims, 950 tiles, of the 791) grades calibration to about 1.5%.
DEFAULT_SIM_FRACTIONS: tuple[float, ...] = (0.60, 0.10, 0.15, 0.05, 0.10)
#: Fractions of the non-fiducial tiles of a ``"tile"`` split: compressor-train, NPE-train
#: (also compressor-validation), test (also NPE-validation).
TILE_FRACTIONS: tuple[float, ...] = (0.70, 0.25, 0.05)
_TILE_SETS = ("compressor_train", "npe_train", "test")
_FORMAT = 2
_INDEX_NAMES = (*SET_NAMES, "fiducial")


@dataclass(frozen=True)
class SplitSpec:
    """
    How a configuration is split (``LENSING_SPLIT`` chooses the kind).

    Attributes
    ----------
    kind
        One of :data:`SPLIT_KINDS`.
    fractions
        Fractions of the non-fiducial sims (``"sim"``: 5, in :data:`SET_NAMES` order) or
        tiles (``"tile"``: 3); the kind's defaults if not given.
    seed
        Seed of the permutation.
    """

    kind: str = "sim"
    fractions: tuple[float, ...] | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"unknown split kind {self.kind!r}; expected one of {SPLIT_KINDS}")
        fractions = self.resolved_fractions()
        want = len(SET_NAMES) if self.kind == "sim" else len(_TILE_SETS)
        if len(fractions) != want or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
            msg = (
                f"a {self.kind!r} split needs {want} positive fractions summing to 1, "
                f"got {fractions}"
            )
            raise ValueError(msg)

    def resolved_fractions(self) -> tuple[float, ...]:
        """The fractions, the kind's defaults if none were given."""
        if self.fractions is not None:
            return tuple(float(f) for f in self.fractions)
        return DEFAULT_SIM_FRACTIONS if self.kind == "sim" else TILE_FRACTIONS


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
    Row indices of the sets of one configuration (sorted, read-only int64 arrays).

    Attributes
    ----------
    compressor_train
        Rows the compressor is trained on (and the only rows the normalisation sees).
    compressor_val
        Rows that choose the compressor's best checkpoint.
    npe_train
        Rows the NPE is trained on.
    npe_val
        Rows that drive the NPE's learning-rate schedule, best state and early stopping.
    test
        Held-out rows, touched once: calibration, test FoM and R^2 of the report.
    fiducial
        Every row (noise realisation 0) of the fiducial sim and of its other realizations
        (:func:`lensing_core.sims.catalog.fiducial_point`), in none of the other sets.
    n_rows
        Rows of the table the split was made for.
    kind, seed, fractions, fiducial_sim_id
        What made the split. In a ``"tile"`` split ``compressor_val`` is ``npe_train`` and
        ``npe_val`` is ``test``, as in the earlier pipeline.
    sim_ids_sha256
        :func:`sim_ids_sha256` of the table's per-row sim ids.
    """

    compressor_train: npt.NDArray[np.int64]
    compressor_val: npt.NDArray[np.int64]
    npe_train: npt.NDArray[np.int64]
    npe_val: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    fiducial: npt.NDArray[np.int64]
    n_rows: int
    kind: str = "sim"
    seed: int = 42
    fractions: tuple[float, ...] = DEFAULT_SIM_FRACTIONS
    fiducial_sim_id: int = FIDUCIAL_SIM_ID
    sim_ids_sha256: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in _INDEX_NAMES:
            object.__setattr__(self, name, _index_array(getattr(self, name)))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name))}" for name in _INDEX_NAMES)
        return f"Split({self.kind}: {sizes}, n_rows={self.n_rows}, seed={self.seed})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def sizes(self) -> dict[str, int]:
        """Number of rows (tiles) of each set, fiducial included."""
        return {name: len(getattr(self, name)) for name in _INDEX_NAMES}

    def sims(self, sim_ids: npt.ArrayLike) -> dict[str, list[int]]:
        """The sims of each set, given the table's per-row sim ids."""
        sim_ids = np.asarray(sim_ids)
        return {name: np.unique(sim_ids[getattr(self, name)]).tolist() for name in _INDEX_NAMES}

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
            "kind": self.kind,
            "n_rows": int(self.n_rows),
            "seed": int(self.seed),
            "fractions": list(self.fractions),
            "fiducial_sim_id": int(self.fiducial_sim_id),
            "sim_ids_sha256": self.sim_ids_sha256,
            **{name: getattr(self, name).tolist() for name in _INDEX_NAMES},
        }

    def sha256(self) -> str:
        """Fingerprint of the split (its sets, settings and rows): equal splits, equal hashes."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Split:
        """Inverse of :meth:`to_dict`, checking that the sets are disjoint and in range."""
        if record.get("format") != _FORMAT:
            raise ValueError(f"split format {record.get('format')!r}, expected {_FORMAT}")
        needed = (*_INDEX_NAMES, "kind", "n_rows", "seed", "fractions")
        missing = [k for k in needed if k not in record]
        if missing:
            raise ValueError(f"split record lacks {missing}")
        split = cls(
            **{name: record[name] for name in _INDEX_NAMES},
            n_rows=int(record["n_rows"]),
            kind=str(record["kind"]),
            seed=int(record["seed"]),
            fractions=tuple(record["fractions"]),
            fiducial_sim_id=int(record.get("fiducial_sim_id", FIDUCIAL_SIM_ID)),
            sim_ids_sha256=str(record.get("sim_ids_sha256", "")),
        )
        SplitSpec(split.kind, split.fractions, split.seed)  # a known kind with valid fractions
        distinct = _INDEX_NAMES if split.kind == "sim" else (*_TILE_SETS, "fiducial")
        if split.kind == "tile" and not (
            np.array_equal(split.compressor_val, split.npe_train)
            and np.array_equal(split.npe_val, split.test)
        ):
            raise ValueError("a tile-level split validates on its NPE-train and test sets")
        every = np.concatenate([getattr(split, name) for name in distinct])
        if len(np.unique(every)) != len(every):
            raise ValueError("split indices overlap between sets")
        if len(every) and (every.min() < 0 or every.max() >= split.n_rows):
            raise ValueError(f"split indices outside [0, {split.n_rows})")
        return split


def _sizes(n: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    # rounding all but the last and giving the rest to the last keeps each within one unit
    head = [round(f * n) for f in fractions[:-1]]
    return (*head, n - sum(head))


def min_units_for(spec: SplitSpec | None = None) -> int:
    """Smallest number of non-fiducial sims (``"sim"``) or tiles (``"tile"``) for a split."""
    fractions = (spec or SplitSpec()).resolved_fractions()
    n = len(fractions)
    while min(_sizes(n, fractions)) < 1:
        n += 1
    return n


def make_split(
    sim_ids: npt.ArrayLike,
    spec: SplitSpec | None = None,
    *,
    realization: npt.ArrayLike | None = None,
    fiducial_sim_id: int = FIDUCIAL_SIM_ID,
) -> Split:
    """
    Deterministic split of a configuration's rows, the fiducial sim held out.

    Parameters
    ----------
    sim_ids
        Sim id of each table row, shape ``(n_rows,)``.
    spec
        Kind, fractions and seed; :class:`SplitSpec` ``()`` (by simulation) if not given.
    realization
        Noise realisation of each row, shape ``(n_rows,)``: only rows of realisation 0 are
        listed (one per tile). Every row is a tile of its own if not given.
    fiducial_sim_id
        Sim whose tiles go to ``fiducial`` only, with every other realization of the fiducial
        (:func:`lensing_core.sims.catalog.fiducial_point`).

    Returns
    -------
        The split; indices sorted within each set.

    Raises
    ------
    ValueError
        Too few non-fiducial sims (``"sim"``) or tiles (``"tile"``) for every set to get
        one (the message gives both numbers).
    """
    spec = spec or SplitSpec()
    sim_ids = np.asarray(sim_ids)
    if sim_ids.ndim != 1:
        raise ValueError(f"expected sim_ids of shape (n_rows,), got {sim_ids.shape}")
    base = np.ones(len(sim_ids), bool)
    if realization is not None:
        realization = np.asarray(realization)
        if realization.shape != sim_ids.shape:
            msg = f"realization has shape {realization.shape}, sim_ids {sim_ids.shape}"
            raise ValueError(msg)
        base = realization == 0
    fractions = spec.resolved_fractions()
    held_out = (sim_ids == fiducial_sim_id) | is_fiducial(sim_ids)
    pool = np.flatnonzero(base & ~held_out)
    units = np.unique(sim_ids[pool]) if spec.kind == "sim" else pool
    n_min = min_units_for(spec)
    if len(units) < n_min:
        what = "sims" if spec.kind == "sim" else "tiles"
        msg = (
            f"too few {what} for a {spec.kind}-level {'/'.join(f'{f:g}' for f in fractions)} "
            f"split: {len(units)} {what} outside the fiducial sim {fiducial_sim_id} and its "
            "realizations, "
            f"need at least {n_min}"
        )
        raise ValueError(msg)
    if not (sim_ids == fiducial_sim_id).any():
        logger.warning(
            "no tile of the fiducial sim %d among %d rows", fiducial_sim_id, len(sim_ids)
        )
    order = np.random.default_rng(spec.seed).permutation(units)
    cuts = np.cumsum([0, *_sizes(len(units), fractions)])
    parts = [order[a:b] for a, b in itertools.pairwise(cuts)]
    if spec.kind == "sim":
        rows = [np.sort(pool[np.isin(sim_ids[pool], part)]) for part in parts]
        sets = dict(zip(SET_NAMES, rows, strict=True))
    else:
        train, npe, test = (np.sort(part) for part in parts)
        sets = {
            "compressor_train": train,
            "compressor_val": npe,
            "npe_train": npe,
            "npe_val": test,
            "test": test,
        }
    return Split(
        **sets,
        fiducial=np.flatnonzero(base & held_out),
        n_rows=len(sim_ids),
        kind=spec.kind,
        seed=spec.seed,
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
