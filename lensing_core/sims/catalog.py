"""Simulation catalogs: sim id -> cosmological parameters.

A catalog comes from the Gower Street parameter table (``gower_street_runs.csv``) or, offline,
from a space-filling synthetic design over the same prior ranges; in both, sim 109 is the
held-out fiducial simulation. Every entry holds the full parameter set a cosmology needs
(``S8 = sigma_8 sqrt(Omega_m / 0.3)`` derived), and inference works on (Omega_m, S8).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from lensing_core.sims.sobol import scrambled_sobol

#: Parameters every catalog entry has.
PARAM_KEYS: tuple[str, ...] = (
    "Omega_m",
    "sigma_8",
    "S8",
    "w",
    "h",
    "n_s",
    "Omega_b",
    "Omega_bh2",
    "m_nu",
)
#: The inferred parameters, in the fixed order used for ``theta`` arrays.
PARAM_NAMES: tuple[str, ...] = ("Omega_m", "S8")

#: The held-out fiducial simulation of the Gower Street suite.
FIDUCIAL_SIM_ID = 109


def s8_from(omega_m: float, sigma_8: float) -> float:
    """``S8 = sigma_8 * sqrt(Omega_m / 0.3)``."""
    return sigma_8 * math.sqrt(omega_m / 0.3)


def _complete(params: Mapping[str, float]) -> dict[str, float]:
    """Add the derived S8 and Omega_b to a parameter mapping."""
    out = {key: float(value) for key, value in params.items()}
    out["S8"] = s8_from(out["Omega_m"], out["sigma_8"])
    out.setdefault("Omega_b", out["Omega_bh2"] / out["h"] ** 2)
    return {key: out[key] for key in PARAM_KEYS}


#: Parameters of the fiducial simulation: sim 109 of the Gower Street parameter table
#: (``gower_street_runs.csv``).
FIDUCIAL_PARAMS: Mapping[str, float] = MappingProxyType(
    _complete(
        {
            "Omega_m": 0.3006605338,
            "sigma_8": 0.8046637795,
            "w": -0.6787827802,
            "Omega_bh2": 0.02239784866,
            "h": 0.6830365788,
            "n_s": 0.9712948741,
            "m_nu": 0.06,
            "Omega_b": 0.04800852705,
        }
    )
)

#: Prior ranges of the Gower Street design.
GOWER_STREET_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "Omega_m": (0.12, 0.50),
        "sigma_8": (0.42, 1.31),
        "S8": (0.50, 1.00),
        "w": (-1.79, -0.34),
        "h": (0.61, 0.78),
        "n_s": (0.947, 0.984),
        "Omega_bh2": (0.0219, 0.0228),
        "m_nu": (0.06, 0.14),
    }
)

#: The two points the fiducial is realized at, and the sim id below the first extra
#: realization of each: ``"sim109"`` (sim 109's exact parameters; sim 109 is its realization
#: 0, extra ones are ``10001, 10002, ...``) and ``"prior_centre"`` (the same Omega_m and S8,
#: the other parameters at the centre of the prior: ``20001, 20002, ...``). The
#: ids are far above any suite's (Gower Street has 791), so they never collide.
FIDUCIAL_POINT_BASES: Mapping[str, int] = MappingProxyType(
    {"sim109": 10_000, "prior_centre": 20_000}
)
_POINT_SPAN = 10_000
#: Realizations of the fiducial per point in the demo and in the full synthetic suite.
DEFAULT_FIDUCIAL_REALIZATIONS: Mapping[str, int] = MappingProxyType({"demo": 4, "full": 16})

FULL_SUITE_SIZE = 791
#: The demo suite: 64 sims (fiducial 109 among them), enough for the compressor of the CPU
#: demo to learn S8 at lmax 200 (``make demo``).
DEMO_SIM_IDS: tuple[int, ...] = tuple(range(101, 165))
SYNTHETIC_DESIGN_SEED = 20221  # fixed: the synthetic suite is the same everywhere


class SimCatalog(Mapping[int, Mapping[str, float]]):
    """
    Immutable catalog of simulations.

    Parameters
    ----------
    entries
        ``{sim_id: {parameter: value}}``; each entry needs at least :data:`PARAM_KEYS`.
    name
        Where the catalog comes from, for messages (e.g. a file path).
    """

    def __init__(self, entries: Mapping[int, Mapping[str, float]], *, name: str) -> None:
        self.name = name
        checked: dict[int, Mapping[str, float]] = {}
        for sim_id, params in entries.items():
            missing = [key for key in PARAM_KEYS if key not in params]
            if missing:
                msg = f"{name}: sim {sim_id} lacks parameters {missing}"
                raise ValueError(msg)
            checked[int(sim_id)] = MappingProxyType(dict(params))
        self._entries = dict(sorted(checked.items()))

    @property
    def sim_ids(self) -> list[int]:
        """Sorted sim ids."""
        return list(self._entries)

    def __getitem__(self, sim_id: int) -> Mapping[str, float]:
        try:
            return self._entries[int(sim_id)]
        except KeyError:
            msg = f"sim {sim_id} is not in the catalog {self.name} ({len(self)} sims)"
            raise KeyError(msg) from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def subset(self, sim_ids: Iterable[int]) -> SimCatalog:
        """The catalog restricted to *sim_ids*; each must be present."""
        return SimCatalog({i: self[i] for i in sim_ids}, name=self.name)

    def theta(self, sim_ids: Iterable[int] | None = None) -> np.ndarray:
        """Parameters :data:`PARAM_NAMES` per sim, shape ``(n_sims, 2)``."""
        ids = self.sim_ids if sim_ids is None else list(sim_ids)
        return np.array([[self[i][key] for key in PARAM_NAMES] for i in ids])


def synthetic_catalog(
    n_sims: int = FULL_SUITE_SIZE, *, seed: int = SYNTHETIC_DESIGN_SEED
) -> SimCatalog:
    """
    Space-filling design over the Gower Street ranges, sims ``1..n_sims``.

    Parameters
    ----------
    n_sims
        Number of simulations; sim 109 (if ``n_sims >= 109``) is set to the fiducial.
    seed
        Seed of the scrambled Sobol sequence.

    Returns
    -------
        Catalog with sim ids ``1..n_sims``.

    Notes
    -----
    Omega_m and S8 are drawn uniformly (S8 within 0.50-1.00, the prior of the study), and
    sigma_8 = S8 / sqrt(Omega_m / 0.3) must fall inside the Gower Street sigma_8 range: points
    outside are skipped, in sequence order, so the design is deterministic and nested (the
    first n sims of a larger design are the design of n sims).
    """
    ranges = GOWER_STREET_RANGES
    names = ("Omega_m", "S8", "w", "h", "n_s", "Omega_bh2", "m_nu")
    lo = np.array([ranges[k][0] for k in names])
    hi = np.array([ranges[k][1] for k in names])
    n_draw = 1 << max(10, math.ceil(math.log2(3 * n_sims)))
    # the points of scipy.stats.qmc.Sobol(rng=default_rng(seed)), which draws from a child it
    # spawns from that generator; in numpy, so that loading the code location needs no scipy
    rng = np.random.default_rng(seed).spawn(1)[0]
    points = lo + scrambled_sobol(n_draw, len(names), rng=rng) * (hi - lo)
    entries: dict[int, dict[str, float]] = {}
    sig_lo, sig_hi = ranges["sigma_8"]
    for row in points:
        values = dict(zip(names, row.tolist(), strict=True))
        values["sigma_8"] = values.pop("S8") / math.sqrt(values["Omega_m"] / 0.3)
        if not sig_lo <= values["sigma_8"] <= sig_hi:
            continue
        entries[len(entries) + 1] = _complete(values)
        if len(entries) == n_sims:
            break
    if FIDUCIAL_SIM_ID in entries:
        entries[FIDUCIAL_SIM_ID] = dict(FIDUCIAL_PARAMS)
    return SimCatalog(entries, name=f"synthetic Gower-Street-like design ({n_sims} sims)")


def fiducial_point(sim_id: int) -> str | None:
    """
    The fiducial point *sim_id* realizes, or None.

    Returns
    -------
        ``"sim109"`` for sim 109 and the ids ``10001..19999``, ``"prior_centre"`` for
        ``20001..29999`` (:data:`FIDUCIAL_POINT_BASES`), else None.
    """
    sim_id = int(sim_id)
    if sim_id == FIDUCIAL_SIM_ID:
        return "sim109"
    for name, base in FIDUCIAL_POINT_BASES.items():
        if base < sim_id < base + _POINT_SPAN:
            return name
    return None


def is_fiducial(sim_ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Boolean mask ``(n,)``: which of *sim_ids* realize a fiducial point (held out of training)."""
    ids = np.asarray(list(sim_ids) if not isinstance(sim_ids, np.ndarray) else sim_ids)
    ids = ids.astype(np.int64).ravel()
    mask = ids == FIDUCIAL_SIM_ID
    for base in FIDUCIAL_POINT_BASES.values():
        mask |= (ids > base) & (ids < base + _POINT_SPAN)
    return mask


def prior_centre_params() -> dict[str, float]:
    """
    Sim 109's Omega_m and S8 with every other parameter at the centre of its prior range.

    sigma_8 follows from S8 and Omega_m; Omega_b from Omega_b h^2 and h. Here w = -1.065
    (sim 109 has -0.679), so the difference between the posteriors at this point and at
    sim 109 is the projection effect of marginalising over the parameters not inferred.
    """
    centre = {k: 0.5 * (lo + hi) for k, (lo, hi) in GOWER_STREET_RANGES.items()}
    values = {k: centre[k] for k in ("w", "h", "n_s", "Omega_bh2", "m_nu")}
    values["Omega_m"] = FIDUCIAL_PARAMS["Omega_m"]
    values["sigma_8"] = FIDUCIAL_PARAMS["S8"] / math.sqrt(values["Omega_m"] / 0.3)
    return _complete(values)


def fiducial_realizations(k: int) -> dict[int, dict[str, float]]:
    """
    The extra simulations of the fiducial: *k* realizations at each fiducial point.

    Parameters
    ----------
    k
        Realizations per point, at least 1. At ``"sim109"`` sim 109 is one of them, so
        ``k - 1`` new ids are made there; at ``"prior_centre"``, *k*. ``k == 1`` makes none:
        sim 109 alone, as in a suite of real simulations.

    Returns
    -------
        ``{sim_id: parameters}`` of the new ids (see :data:`FIDUCIAL_POINT_BASES`).
    """
    if not 1 <= int(k) < _POINT_SPAN:
        msg = f"fiducial realizations per point must be in [1, {_POINT_SPAN}), got {k}"
        raise ValueError(msg)
    if k == 1:
        return {}
    exact = FIDUCIAL_POINT_BASES["sim109"]
    centre = FIDUCIAL_POINT_BASES["prior_centre"]
    out = {exact + j: dict(FIDUCIAL_PARAMS) for j in range(1, k)}
    out.update({centre + j: prior_centre_params() for j in range(1, k + 1)})
    return out


def default_fiducial_realizations(suite: str) -> int:
    """Realizations per fiducial point a suite gets: 4 (demo), 16 (full), 1 (a list of ids)."""
    return DEFAULT_FIDUCIAL_REALIZATIONS.get(suite.strip().lower(), 1)


def parse_suite(suite: str) -> list[int] | None:
    """
    Sim ids of a suite specification.

    Parameters
    ----------
    suite
        ``"full"`` (every sim of the source: returns ``None``), ``"demo"`` (sims 101-164,
        which include the fiducial 109), or a comma-separated list of ids and inclusive
        ranges such as ``"1-20,109"``.

    Returns
    -------
        Sorted sim ids, or ``None`` for every sim.

    Examples
    --------
    >>> parse_suite("3-5,109")
    [3, 4, 5, 109]
    """
    text = suite.strip().lower()
    if text == "full":
        return None
    if text == "demo":
        return list(DEMO_SIM_IDS)
    ids: set[int] = set()
    bad = f"suite {suite!r} is not 'full', 'demo' or a list of sim ids like '1-20,109'"
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, dash, last = part.partition("-")
        try:
            lo, hi = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(bad) from None
        if lo < 0 or hi < lo:
            msg = f"{bad}: {part!r} is not an increasing range of non-negative ids"
            raise ValueError(msg)
        ids.update(range(lo, hi + 1))
    if not ids:
        msg = f"suite {suite!r} names no simulation"
        raise ValueError(msg)
    return sorted(ids)


# Columns of gower_street_runs.csv, by position (the header names are not relied upon).
_GOWER_STREET_COLUMNS = {
    "Omega_m": 3,
    "sigma_8": 4,
    "w": 5,
    "Omega_bh2": 6,
    "h": 7,
    "n_s": 8,
    "m_nu": 9,
    "Omega_b": 10,
}


def read_gower_street_csv(path: str | Path) -> SimCatalog:
    """
    Read a parameter table in the Gower Street ``gower_street_runs.csv`` format.

    Parameters
    ----------
    path
        CSV file: a category row, a column-name row, then one row per simulation with
        columns by position: 0 sim id, 1 run, 2 job, 3 Omega_m, 4 sigma_8, 5 w,
        6 Omega_b h^2, 7 h, 8 n_s, 9 m_nu (eV), 10 Omega_b, then free-form columns.

    Returns
    -------
        Catalog keyed by sim id, with S8 = sigma_8 sqrt(Omega_m / 0.3) derived.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a row with too few columns or a non-numeric value (the line is named), a
        duplicated sim id, or a table without rows.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"parameter table {path} does not exist"
        raise FileNotFoundError(msg)
    entries: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    for line_no, row in enumerate(rows[2:], start=3):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 11:
            msg = f"{path}, line {line_no}: expected at least 11 columns, got {len(row)}"
            raise ValueError(msg)
        try:
            sim_id = int(row[0])
            values = {key: float(row[col]) for key, col in _GOWER_STREET_COLUMNS.items()}
        except ValueError as err:
            msg = f"{path}, line {line_no}: malformed row ({err})"
            raise ValueError(msg) from None
        invalid = [k for k, v in values.items() if not math.isfinite(v)] + [
            k for k in ("Omega_m", "sigma_8", "h", "Omega_b", "Omega_bh2") if values[k] <= 0
        ]
        if sim_id < 0 or invalid:
            what = f"sim id {sim_id}" if sim_id < 0 else f"non-finite or non-positive {invalid}"
            msg = f"{path}, line {line_no}: malformed row ({what})"
            raise ValueError(msg)
        if sim_id in entries:
            msg = f"{path}, line {line_no}: sim id {sim_id} appears twice"
            raise ValueError(msg)
        entries[sim_id] = _complete(values)
    if not entries:
        msg = f"{path}: no simulation rows after the two header rows"
        raise ValueError(msg)
    return SimCatalog(entries, name=str(path))
