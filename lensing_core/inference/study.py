"""The study: field-level against power-spectrum inference against the Fisher forecast.

For every configuration (lmax, noise level) three results may exist under the data root:

    field    models/npe/lmax{L}_{noise}/fom_result.json   NPE on the compressed maps
    cl       models/cl/lmax{L}_{noise}/fom_result.json    NPE on the compressed band powers
    fisher   models/fisher/lmax{L}_{noise}/fisher.json    Fisher forecast of the band powers

:func:`collect_study` reads what exists into a :class:`Study` (one :class:`StudyRow` per
configuration, the FoMs, their calibration and ratios); an absent or unreadable result is a
:class:`MissingResult` with its reason, never an error. :func:`write_study` writes the
report, ``reports/study/study.json``, ``study.png`` and ``study.md``, each atomically.

Every FoM is ``1 / sqrt(det Cov)`` of (Omega_m, S8) in physical units, for one tile (one
HEALPix base face). The field and Cl FoMs are the median over the 12 fiducial tiles, with
their tile-to-tile standard deviation; the Fisher FoM marginalises over w, h, n_s, Omega_bh2
and m_nu within their box priors (``fom_fisher_fixed`` fixes them).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lensing_core.dataset.schema import config_name
from lensing_core.inference.fom import read_fom_result
from lensing_core.io import InputMissingError, read_record, write_bytes, write_text
from lensing_core.plotting.figures import figure_to_png_bytes
from lensing_core.plotting.study import study_figure
from lensing_core.results import Image, Markdown, Table
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

#: The results compared, in the order of the report.
RESULTS: tuple[str, ...] = ("field", "cl", "fisher")
#: How the report names each result.
RESULT_LABELS: dict[str, str] = {
    "field": "field-level FoM",
    "cl": "power-spectrum FoM",
    "fisher": "Fisher forecast",
}
#: Keys a ``fisher.json`` record must hold for the study.
FISHER_KEYS: tuple[str, ...] = ("fom_fisher", "fom_fisher_fixed", "fom_prior")

STUDY_JSON = "study.json"
STUDY_PNG = "study.png"
STUDY_MD = "study.md"
MISSING = "missing"
UNREADABLE = "unreadable"
NO_RATIO = "—"
SPLIT_MARK = "†"
NOT_RECORDED = "not recorded"  # the verdict of a record written before there was one

_DEFINITIONS = {
    "fom": "1/sqrt(det Cov) of (Omega_m, S8), physical units, one tile (a HEALPix base face)",
    "fom_field, fom_cl": "median FoM of the 12 fiducial tiles (NPE on maps, on band powers)",
    "fom_field, fom_cl (seeds)": "with several NPE seeds: the median over seeds",
    "fom_field_std, fom_cl_std": "tile-to-tile standard deviation of that FoM",
    "fom_field_seed_std, fom_cl_seed_std": "seed-to-seed standard deviation of that FoM",
    "verdict_field, verdict_cl": "calibration of the test posteriors over every credible level: "
    "calibrated, over-confident, under-confident or mixed",
    "fom_field_test, fom_cl_test": "median FoM of the test tiles",
    "coverage_68_*, coverage_95_*": "fraction of test tiles inside their 68% / 95% ellipse",
    "fom_fisher": "Fisher FoM, w, h, n_s, Omega_bh2, m_nu marginalised within their box priors",
    "fom_fisher_fixed": "Fisher FoM with the other parameters fixed at the fiducial",
    "fom_prior": "FoM of the NPE's prior: the training parameters' covariance (field, else Cl)",
    "fom_prior_box": "FoM of the box prior on (Omega_m, S8) alone (the Fisher record's)",
    "split_mismatch": "the field and Cl NPEs were trained on different splits (split_sha256)",
    "None": "a missing or unreadable result, or a ratio with such an operand",
}


def default_configs() -> list[tuple[int, str]]:
    """Every configuration: each noise level of :data:`NOISE_LEVELS`, each lmax increasing."""
    return [(lmax, noise) for noise in NOISE_LEVELS for lmax in sorted(LMAX_TO_NSIDE)]


# --- the results of one configuration ----------------------------------------------------------


@dataclass(frozen=True)
class NPEResult:
    """
    The figure of merit of one NPE (field level or power spectrum) of one configuration.

    Attributes
    ----------
    fom, fom_std
        Median FoM of the 12 fiducial tiles and its tile-to-tile standard deviation.
    fom_test
        Median FoM of the test tiles.
    fom_prior
        FoM of the prior (the training parameters' covariance).
    coverage_68, coverage_95, n_test
        Calibration: fractions of the *n_test* test tiles inside their credible ellipses.
    verdict
        The calibration verdict of the test posteriors (``"not recorded"`` in records
        written before there was one).
    fom_seed_std, n_seeds
        Seed-to-seed standard deviation of the FoM (None with one seed) and the seeds.
    split_sha256
        Hash of the split the NPE was trained on; ``None`` in records written before it was.
    path
        The record read.
    """

    fom: float
    fom_std: float
    fom_test: float
    fom_prior: float
    coverage_68: float
    coverage_95: float
    n_test: int
    split_sha256: str | None
    path: Path
    verdict: str = NOT_RECORDED
    fom_seed_std: float | None = None
    n_seeds: int = 1


@dataclass(frozen=True)
class FisherResult:
    """
    The Fisher forecast of one configuration.

    Attributes
    ----------
    fom, fom_fixed
        FoM with the other parameters marginalised within their box priors, and fixed.
    fom_prior
        FoM of the box prior on (Omega_m, S8) alone.
    path
        The record read.
    """

    fom: float
    fom_fixed: float
    fom_prior: float
    path: Path


@dataclass(frozen=True)
class MissingResult:
    """
    A result the study could not use.

    Attributes
    ----------
    config, lmax, noise_level
        Its configuration.
    result
        ``"field"``, ``"cl"`` or ``"fisher"``.
    path
        Where it is expected.
    reason
        Why it is missing, naming the configuration and the file.
    unreadable
        ``True`` when the file exists but is corrupt, incomplete or holds a non-finite FoM;
        ``False`` when it does not exist (not made yet).
    """

    config: str
    lmax: int
    noise_level: str
    result: str
    path: Path
    reason: str
    unreadable: bool

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "config": self.config,
            "lmax": self.lmax,
            "noise_level": self.noise_level,
            "result": self.result,
            "path": str(self.path),
            "reason": self.reason,
            "unreadable": self.unreadable,
        }


def _number(record: Mapping[str, Any], key: str, *, low: float, strict: bool = False) -> float:
    """``record[key]`` as a finite float above *low* (or at least *low*), else ValueError."""
    value = record.get(key)
    number = float("nan")
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if not (math.isfinite(number) and (number > low if strict else number >= low)):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        msg = f"{key} = {value!r} is not a finite number {bound}"
        raise ValueError(msg)
    return number


def _check_config(record: Mapping[str, Any], lmax: int, noise_level: str) -> None:
    """ValueError if *record* says it is of another configuration than its path."""
    found = (record.get("lmax", lmax), record.get("noise_level", noise_level))
    if found != (lmax, noise_level):
        msg = f"the record is of lmax {found[0]!r}, noise level {found[1]!r}"
        raise ValueError(msg)


def _npe_result(record: Mapping[str, Any], path: Path, lmax: int, noise_level: str) -> NPEResult:
    """The numbers of a ``fom_result.json`` record, checked."""
    _check_config(record, lmax, noise_level)
    calib = record["calibration"]
    if not isinstance(calib, Mapping):
        msg = f"calibration = {calib!r} is not a mapping"
        raise ValueError(msg)
    n_test = calib.get("n_test")
    if not isinstance(n_test, int) or isinstance(n_test, bool) or n_test < 0:
        msg = f"calibration.n_test = {n_test!r} is not a count"
        raise ValueError(msg)
    split = record.get("split_sha256")
    if split is not None and not isinstance(split, str):
        msg = f"split_sha256 = {split!r} is not a text"
        raise ValueError(msg)
    coverage = {key: _number(calib, key, low=0.0) for key in ("coverage_68", "coverage_95")}
    if any(value > 1 for value in coverage.values()):
        msg = f"calibration coverages {coverage} are not fractions"
        raise ValueError(msg)
    return NPEResult(
        fom=_number(record, "fom_fiducial_median", low=0.0, strict=True),
        fom_std=_number(record, "fom_fiducial_std", low=0.0),
        fom_test=_number(record, "fom_test_median", low=0.0, strict=True),
        fom_prior=_number(record, "fom_prior", low=0.0, strict=True),
        coverage_68=coverage["coverage_68"],
        coverage_95=coverage["coverage_95"],
        n_test=n_test,
        split_sha256=split,
        path=path,
        verdict=str(calib.get("verdict", NOT_RECORDED)),
        fom_seed_std=_seed_std(record),
        n_seeds=len(record.get("seeds", [None])),
    )


def _seed_std(record: Mapping[str, Any]) -> float | None:
    scatter = record.get("fom_scatter")
    if not isinstance(scatter, Mapping) or scatter.get("seed") is None:
        return None
    return _number(scatter, "seed", low=0.0)


def _read_npe(path: Path, lmax: int, noise_level: str) -> NPEResult:
    """Read and check one NPE's ``fom_result.json``; InputMissingError or ValueError."""
    record = read_fom_result(path)
    try:
        return _npe_result(record, path, lmax, noise_level)
    except ValueError as err:
        msg = f"FoM result {path} is not usable: {err}"
        raise ValueError(msg) from None


def _read_fisher(path: Path, lmax: int, noise_level: str) -> FisherResult:
    """Read and check one ``fisher.json``; InputMissingError or ValueError."""
    record = read_record(path, FISHER_KEYS, what="Fisher forecast")
    try:
        _check_config(record, lmax, noise_level)
        return FisherResult(
            fom=_number(record, "fom_fisher", low=0.0, strict=True),
            fom_fixed=_number(record, "fom_fisher_fixed", low=0.0, strict=True),
            fom_prior=_number(record, "fom_prior", low=0.0, strict=True),
            path=path,
        )
    except ValueError as err:
        msg = f"Fisher forecast {path} is not usable: {err}"
        raise ValueError(msg) from None


# --- one configuration, and the study ---------------------------------------------------------


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class StudyRow:
    """
    The three results of one configuration; each ``None`` when missing.

    Attributes
    ----------
    lmax, noise_level
        The configuration.
    field, cl
        The NPE on the compressed maps and on the compressed band powers.
    fisher
        The Fisher forecast of the band powers.
    """

    lmax: int
    noise_level: str
    field: NPEResult | None
    cl: NPEResult | None
    fisher: FisherResult | None

    @property
    def config(self) -> str:
        """The configuration's name, e.g. ``lmax_200_des_y3``."""
        return config_name(self.lmax, self.noise_level)

    @property
    def fom_field(self) -> float | None:
        """Median fiducial FoM of the field-level NPE."""
        return None if self.field is None else self.field.fom

    @property
    def fom_cl(self) -> float | None:
        """Median fiducial FoM of the power-spectrum NPE."""
        return None if self.cl is None else self.cl.fom

    @property
    def fom_fisher(self) -> float | None:
        """Fisher FoM, the other parameters marginalised."""
        return None if self.fisher is None else self.fisher.fom

    @property
    def field_over_cl(self) -> float | None:
        """FoM_field / FoM_Cl: what the maps hold beyond their power spectrum."""
        return _ratio(self.fom_field, self.fom_cl)

    @property
    def field_over_fisher(self) -> float | None:
        """FoM_field / FoM_Fisher."""
        return _ratio(self.fom_field, self.fom_fisher)

    @property
    def cl_over_fisher(self) -> float | None:
        """FoM_Cl / FoM_Fisher: how close the band-power NPE comes to its forecast."""
        return _ratio(self.fom_cl, self.fom_fisher)

    @property
    def fom_prior(self) -> float | None:
        """FoM of the NPE's prior (the field record's, else the Cl record's)."""
        npe = self.field or self.cl
        return None if npe is None else npe.fom_prior

    @property
    def split_mismatch(self) -> bool:
        """Both NPE records name their split and the two differ: not a like-for-like ratio."""
        if self.field is None or self.cl is None:
            return False
        a, b = self.field.split_sha256, self.cl.split_sha256
        return a is not None and b is not None and a != b

    def notes(self) -> list[str]:
        """What a reader must know to compare this row's results."""
        if self.field is None or self.cl is None or not self.split_mismatch:
            return []
        return [
            f"{self.config}: the field and Cl NPEs were trained on different splits "
            f"(split_sha256 {self.field.split_sha256} and {self.cl.split_sha256}), so "
            "FoM_field/FoM_Cl is not like for like"
        ]

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record, flat; ``None`` where a result is missing."""
        record: dict[str, Any] = {
            "config": self.config,
            "lmax": self.lmax,
            "noise_level": self.noise_level,
        }
        for name, npe in (("field", self.field), ("cl", self.cl)):
            record |= {
                f"fom_{name}": None if npe is None else npe.fom,
                f"fom_{name}_std": None if npe is None else npe.fom_std,
                f"fom_{name}_seed_std": None if npe is None else npe.fom_seed_std,
                f"verdict_{name}": None if npe is None else npe.verdict,
                f"fom_{name}_test": None if npe is None else npe.fom_test,
                f"coverage_68_{name}": None if npe is None else npe.coverage_68,
                f"coverage_95_{name}": None if npe is None else npe.coverage_95,
                f"n_test_{name}": None if npe is None else npe.n_test,
                f"split_sha256_{name}": None if npe is None else npe.split_sha256,
            }
        return record | {
            "fom_fisher": self.fom_fisher,
            "fom_fisher_fixed": None if self.fisher is None else self.fisher.fom_fixed,
            "field_over_cl": self.field_over_cl,
            "field_over_fisher": self.field_over_fisher,
            "cl_over_fisher": self.cl_over_fisher,
            "fom_prior": self.fom_prior,
            "fom_prior_box": None if self.fisher is None else self.fisher.fom_prior,
            "split_mismatch": self.split_mismatch,
            "notes": self.notes(),
        }


#: Columns of :meth:`Study.table`: name -> type, values from :meth:`StudyRow.to_record`.
TABLE_COLUMNS: dict[str, str] = {
    "config": "string",
    "lmax": "int",
    "noise_level": "string",
    "fom_field": "float",
    "fom_field_std": "float",
    "fom_field_seed_std": "float",
    "coverage_68_field": "float",
    "coverage_95_field": "float",
    "verdict_field": "string",
    "fom_cl": "float",
    "fom_cl_std": "float",
    "fom_cl_seed_std": "float",
    "coverage_68_cl": "float",
    "coverage_95_cl": "float",
    "verdict_cl": "string",
    "fom_fisher": "float",
    "fom_fisher_fixed": "float",
    "field_over_cl": "float",
    "field_over_fisher": "float",
    "cl_over_fisher": "float",
    "fom_prior": "float",
    "split_mismatch": "bool",
}


def _fmt_fom(value: float) -> str:
    return f"{value:.0f}" if value >= 1e4 else f"{value:.4g}"


@dataclass(frozen=True)
class Study:
    """
    The results of every configuration of the study.

    Attributes
    ----------
    rows
        One per configuration, in the order collected.
    missing
        Every result that is absent or unreadable, with its reason.
    """

    rows: tuple[StudyRow, ...]
    missing: tuple[MissingResult, ...]

    def counts(self) -> dict[str, int]:
        """Configurations in all, with each result, with all three and with none."""
        have = {
            "field": sum(row.field is not None for row in self.rows),
            "cl": sum(row.cl is not None for row in self.rows),
            "fisher": sum(row.fisher is not None for row in self.rows),
        }
        return {
            "configurations": len(self.rows),
            **have,
            "complete": sum(None not in (r.field, r.cl, r.fisher) for r in self.rows),
            "empty": sum((r.field, r.cl, r.fisher) == (None, None, None) for r in self.rows),
            "unreadable": sum(m.unreadable for m in self.missing),
        }

    @property
    def is_empty(self) -> bool:
        """No configuration has any result."""
        return all((r.field, r.cl, r.fisher) == (None, None, None) for r in self.rows)

    def split_mismatches(self) -> list[str]:
        """Configurations whose field and Cl NPEs were trained on different splits."""
        return [row.config for row in self.rows if row.split_mismatch]

    def summary(self) -> str:
        """One line: how many configurations have each result, and how many are unreadable."""
        c = self.counts()
        n = c["configurations"]
        text = f"field {c['field']}/{n}, Cl {c['cl']}/{n}, Fisher {c['fisher']}/{n}"
        if self.is_empty:
            text = f"no result yet in any of the {n} configurations"
        if c["unreadable"]:
            text += f"; {c['unreadable']} unreadable"
        return text

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record: definitions, counts, one row per configuration, the missing."""
        return {
            "definitions": dict(_DEFINITIONS),
            "counts": self.counts(),
            "split_mismatches": self.split_mismatches(),
            "rows": [row.to_record() for row in self.rows],
            "missing": [m.to_record() for m in self.missing],
        }

    def table(self) -> Table:
        """The rows as a typed table, ``None`` where a value is missing (nullable columns)."""
        rows = []
        for row in self.rows:
            record = row.to_record()
            rows.append({name: record[name] for name in TABLE_COLUMNS})
        return Table(dict(TABLE_COLUMNS), rows)

    def markdown(self) -> str:
        """The report: one table per noise level (rows: lmax), the notes and the missing."""
        state = {
            (m.config, m.result): UNREADABLE if m.unreadable else MISSING for m in self.missing
        }
        lines = [
            "# Figure-of-merit study: field level, power spectrum and Fisher forecast",
            "",
            f"Results: {self.summary()}.",
            "",
            "FoM = 1/sqrt(det Cov) of (Omega_m, S8), physical units, for one tile (a HEALPix "
            "base face). Field and Cl: NPE on the compressed maps and on the compressed band "
            "powers, median ± tile-to-tile std over the fiducial tiles at sim 109's parameters "
            "(every realization; with several NPE seeds, the median over seeds, their std in "
            "brackets); calibration: fraction of the test tiles inside their 68%/95% credible "
            "ellipse, and the verdict of the coverage over every level. Fisher: band-power "
            "forecast, w, h, n_s, Omega_bh2 and m_nu marginalised within their box priors (in "
            "brackets: fixed). Prior: FoM of the NPE's prior.",
            "",
            f"`{MISSING}`: the result does not exist yet; `{UNREADABLE}`: its file could not be "
            f"used (see below); `{NO_RATIO}`: a ratio with a missing operand; `{SPLIT_MARK}`: "
            "field and Cl trained on different splits (not like for like).",
        ]
        header = (
            "| lmax | FoM field | calibration field | FoM Cl | calibration Cl "
            "| FoM Fisher (fixed) | field/Cl | field/Fisher | Cl/Fisher | prior |"
        )
        noise_levels = [n for n in NOISE_LEVELS if any(r.noise_level == n for r in self.rows)]
        for noise_level in noise_levels:
            rows = sorted((r for r in self.rows if r.noise_level == noise_level), key=_lmax)
            lines += ["", f"## {noise_level}", "", header, "|" + "---:|" * 10]
            lines += [_markdown_row(row, state) for row in rows]
        notes = [note for row in self.rows for note in row.notes()]
        if notes:
            lines += ["", "## Notes", "", *(f"- {SPLIT_MARK} {note}" for note in notes)]
        if self.missing:
            # the unreadable first: they need a person, the absent only the pipeline
            ordered = sorted(self.missing, key=lambda m: not m.unreadable)
            lines += ["", "## Missing results", "", *(f"- {m.reason}" for m in ordered)]
        return "\n".join(lines) + "\n"

    def figure(self) -> Figure:
        """FoM against lmax, one panel per noise level (:func:`study_figure`)."""
        lmaxes = sorted({row.lmax for row in self.rows})
        fom: dict[str, dict[str, list[float | None]]] = {}
        std: dict[str, dict[str, list[float | None]]] = {}
        for noise_level in NOISE_LEVELS:
            by_lmax = {r.lmax: r for r in self.rows if r.noise_level == noise_level}
            if not by_lmax:
                continue
            rows = [by_lmax.get(lmax) for lmax in lmaxes]
            fom[noise_level] = {
                "field": [None if r is None else r.fom_field for r in rows],
                "cl": [None if r is None else r.fom_cl for r in rows],
                "fisher": [None if r is None else r.fom_fisher for r in rows],
            }
            std[noise_level] = {
                name: [_std(None if r is None else getattr(r, name)) for r in rows]
                for name in ("field", "cl")
            }
        return study_figure(
            lmaxes,
            fom,
            fom_std=std,
            title="FoM of (Omega_m, S8) per tile: field level, power spectrum, Fisher",
        )


def _lmax(row: StudyRow) -> int:
    return row.lmax


def _std(result: NPEResult | None) -> float | None:
    return None if result is None else result.fom_std


def _markdown_row(row: StudyRow, state: Mapping[tuple[str, str], str]) -> str:
    """One line of a noise level's table."""

    def absent(result: str) -> str:
        return state.get((row.config, result), MISSING)

    cells = [str(row.lmax)]
    for name, npe in (("field", row.field), ("cl", row.cl)):
        if npe is None:
            cells += [absent(name), absent(name)]
        else:
            seed = "" if npe.fom_seed_std is None else f" (seeds ± {_fmt_fom(npe.fom_seed_std)})"
            cells += [
                f"{_fmt_fom(npe.fom)} ± {_fmt_fom(npe.fom_std)}{seed}",
                f"{npe.coverage_68:.2f} / {npe.coverage_95:.2f}"
                + ("" if npe.verdict == NOT_RECORDED else f", {npe.verdict}"),
            ]
    fisher = row.fisher
    cells.append(
        absent("fisher")
        if fisher is None
        else f"{_fmt_fom(fisher.fom)} ({_fmt_fom(fisher.fom_fixed)})"
    )
    mark = f" {SPLIT_MARK}" if row.split_mismatch else ""
    for value, suffix in (
        (row.field_over_cl, mark),
        (row.field_over_fisher, ""),
        (row.cl_over_fisher, ""),
    ):
        cells.append(NO_RATIO if value is None else f"{value:.3g}{suffix}")
    cells.append(MISSING if row.fom_prior is None else _fmt_fom(row.fom_prior))
    return "| " + " | ".join(cells) + " |"


# --- reading and writing ----------------------------------------------------------------------


def _result_paths(root: DataRoot, lmax: int, noise_level: str) -> dict[str, Path]:
    return {
        "field": root.npe(lmax, noise_level).fom_result,
        "cl": root.cl_fom_result_path(lmax, noise_level),
        "fisher": root.fisher_path(lmax, noise_level),
    }


def collect_study(root: DataRoot, configs: Sequence[tuple[int, str]] | None = None) -> Study:
    """
    Read the field, Cl and Fisher results of every configuration.

    Parameters
    ----------
    root
        The data root.
    configs
        ``(lmax, noise_level)`` pairs; every configuration (:func:`default_configs`) if not
        given.

    Returns
    -------
        One row per configuration in the order given. A result whose file does not exist is
        missing; one whose file is corrupt, lacks a key, is of another configuration or holds
        a FoM that is not a positive finite number is missing too, with the reason (naming the
        configuration and the file) logged as a warning. No result stops the others being read.

    Raises
    ------
    ValueError
        No configuration, an unknown lmax or noise level, or a configuration given twice.
    """
    pairs = default_configs() if configs is None else [(int(L), str(n)) for L, n in configs]
    if not pairs:
        msg = "no configuration to collect the study of"
        raise ValueError(msg)
    names = [config_name(lmax, noise) for lmax, noise in pairs]  # raises for unknown ones
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        msg = f"configurations given more than once: {twice}"
        raise ValueError(msg)
    readers: dict[str, Callable[[Path, int, str], NPEResult | FisherResult]] = {
        "field": _read_npe,
        "cl": _read_npe,
        "fisher": _read_fisher,
    }
    rows, missing = [], []
    for (lmax, noise_level), config in zip(pairs, names, strict=True):
        found: dict[str, Any] = {}
        for result, path in _result_paths(root, lmax, noise_level).items():
            label = f"{config}, {RESULT_LABELS[result]}"
            found[result] = None
            try:
                found[result] = readers[result](path, lmax, noise_level)
            except InputMissingError:
                reason, unreadable = f"{label}: not made yet, {path} does not exist", False
            except (ValueError, OSError) as err:
                reason, unreadable = f"{label}: unreadable, {err}", True
                logger.warning("%s", reason)
            else:
                continue
            missing.append(
                MissingResult(config, lmax, noise_level, result, path, reason, unreadable)
            )
        rows.append(StudyRow(lmax, noise_level, found["field"], found["cl"], found["fisher"]))
    return Study(tuple(rows), tuple(missing))


@dataclass(frozen=True)
class StudyReport:
    """
    Outcome of :func:`write_study`.

    Attributes
    ----------
    json_path, png_path, md_path
        ``reports/study/study.json``, ``study.png`` and ``study.md``.
    record
        The ``study.json`` record (:meth:`Study.to_record`).
    png
        The figure's PNG bytes.
    markdown
        The ``study.md`` text.
    table
        The rows as a table (:meth:`Study.table`).
    summary
        One line on what the study holds (:meth:`Study.summary`).
    """

    json_path: Path
    png_path: Path
    md_path: Path
    record: Mapping[str, Any]
    png: bytes
    markdown: str
    table: Table
    summary: str

    def to_metadata(self) -> dict[str, Any]:
        """The files, the counts of results, the table, the figure and the report's text."""
        counts = self.record["counts"]
        return {
            "path": self.json_path,
            "figure_path": self.png_path,
            "markdown_path": self.md_path,
            "summary": self.summary,
            "n_configurations": counts["configurations"],
            "n_field": counts["field"],
            "n_cl": counts["cl"],
            "n_fisher": counts["fisher"],
            "n_complete": counts["complete"],
            "n_unreadable": counts["unreadable"],
            "split_mismatches": list(self.record["split_mismatches"]),
            "unreadable": [m["reason"] for m in self.record["missing"] if m["unreadable"]],
            "study": self.table,
            "figure": Image(self.png, "FoM against lmax: field level, power spectrum, Fisher"),
            "report": Markdown(self.markdown),
        }


def write_study(root: DataRoot, study: Study) -> StudyReport:
    """
    Write the study's report: ``study.json``, ``study.png`` and ``study.md``.

    Parameters
    ----------
    root
        The data root; the files go to :attr:`~lensing_core.storage.DataRoot.study_dir`.
    study
        From :func:`collect_study`.

    Returns
    -------
        The paths, the record, the figure and the text.

    Raises
    ------
    ValueError
        The record is not JSON-ready (nothing is written then).

    Notes
    -----
    Everything is built in memory before the first file is written, so a failure (the
    figure, the record) leaves the previous report as it was; each file is then replaced
    atomically (the figure, the text, the record last). A study with no result at all is
    written too: the report then says that every result is missing, which is the truth, and
    its ``summary`` says so (callers may warn on :attr:`Study.is_empty`).
    """
    record = study.to_record()
    try:
        json_text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        msg = f"the study record for {root.study_dir / STUDY_JSON} is not JSON-ready: {err}"
        raise ValueError(msg) from None
    markdown = study.markdown()
    table = study.table()
    png = figure_to_png_bytes(study.figure())

    paths = {name: root.study_dir / name for name in (STUDY_JSON, STUDY_PNG, STUDY_MD)}
    write_bytes(paths[STUDY_PNG], png, tmp_root=root.tmp_root)
    write_text(paths[STUDY_MD], markdown, tmp_root=root.tmp_root)
    write_text(paths[STUDY_JSON], json_text, tmp_root=root.tmp_root)
    logger.info("study written to %s: %s", root.study_dir, study.summary())
    return StudyReport(
        json_path=paths[STUDY_JSON],
        png_path=paths[STUDY_PNG],
        md_path=paths[STUDY_MD],
        record=record,
        png=png,
        markdown=markdown,
        table=table,
        summary=study.summary(),
    )
