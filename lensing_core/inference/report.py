"""The FoM report of one configuration from its posteriors, shared by field and band powers.

:func:`finish_fom_report` takes the Gaussian posteriors of the fiducial and test tiles that
each NPE of a seed spread gives, and writes ``fom_result.json`` and two figures:

- the FoM at sim 109's parameters over every realization of the fiducial there, as the median
  over seeds of the per-seed median over tiles; beside it the tile-to-tile,
  realization-to-realization and seed-to-seed scatter;
- the offset of the posterior means from the truth at each fiducial point, as pulls, and the
  projection offset between the points (:mod:`lensing_core.inference.fiducial`);
- calibration diagnostics (coverage curve with verdict, SBC ranks, TARP:
  :mod:`lensing_core.inference.calibration`) on the test split and at each fiducial point.

The FoM's tiles and figure are those of the *representative* seed: the one whose FoM is
nearest the median over seeds (the median itself for an odd number of seeds). Pulls and
calibration are those of the *ensemble* posterior: the Gaussian with the mean and covariance
of the equal-weight mixture of the seeds' posteriors (:func:`ensemble`), so that neither
depends on one seed's luck and the seeds' disagreement widens the posterior.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from lensing_core._types import FloatArray
from lensing_core.dataset.schema import config_name
from lensing_core.dataset.splits import Split
from lensing_core.inference.calibration import (
    MIN_ROWS,
    CalibrationReport,
    calibration_diagnostics,
    coverage_curve,
)
from lensing_core.inference.fiducial import fiducial_bias, projection_offset
from lensing_core.inference.fom import (
    CALIBRATION_LEVELS,
    coverage,
    fom_from_cov,
    fom_summary,
    level_key,
    to_physical,
    write_fom_result,
)
from lensing_core.inference.npe import GaussianNPE
from lensing_core.inference.training import finite_or_none
from lensing_core.io import write_bytes
from lensing_core.plotting.calibration import calibration_figure
from lensing_core.plotting.figures import figure_to_png_bytes
from lensing_core.plotting.fom import fom_figure
from lensing_core.results import Image, Markdown, Table
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, PARAM_NAMES, fiducial_point
from lensing_core.storage import DataRoot

logger = logging.getLogger(__name__)

#: The summaries a FoM report is of: neural field-level compression, or band powers.
SUMMARY_TITLES = {"field": "field level", "cl": "power spectrum"}

#: A posterior per row: standardised means ``(n, 2)`` and covariances ``(n, 2, 2)``.
Posteriors = tuple[FloatArray, FloatArray]


def config_label(lmax: int, noise_level: str) -> str:
    """How messages name a configuration: ``configuration lmax_200_des_y3``."""
    return f"configuration {config_name(lmax, noise_level)}"


def npe_posteriors(model: GaussianNPE, summaries: torch.Tensor) -> Posteriors:
    """Standardised posterior means ``(n, 2)`` and covariances ``(n, 2, 2)`` of *summaries*."""
    device = next(model.parameters()).device
    with torch.no_grad():
        mean, cov = model.mean_cov(summaries.to(device))
    return mean.double().cpu().numpy(), cov.double().cpu().numpy()


def check_fiducial(split: Split, root: DataRoot, lmax: int, noise_level: str) -> None:
    """Raise ValueError, naming the configuration's shards, if *split* has no fiducial tile."""
    if len(split.fiducial) == 0:
        msg = (
            f"{config_label(lmax, noise_level)}: the shards in "
            f"{root.shards(lmax, noise_level).dir} hold no tile of the fiducial sim "
            f"{FIDUCIAL_SIM_ID}"
        )
        raise ValueError(msg)


@dataclass(frozen=True)
class FomReport:
    """
    Outcome of :func:`finish_fom_report`.

    Attributes
    ----------
    result_path
        ``models/npe/lmax{L}_{noise}/fom_result.json`` (``models/cl/...`` for band powers).
    figure_path, calibration_path
        The FoM figure and the calibration figure of the test split (``reports/fom/...``,
        ``reports/calibration/...``; None with too few test tiles for diagnostics).
    record
        The ``fom_result.json`` record: the keys of
        :data:`~lensing_core.inference.fom.FOM_RESULT_KEYS` plus the seed spread, the
        fiducial points, the calibration diagnostics and provenance.
    figure_png, calibration_png
        The figures' PNG bytes (for embedding in metadata; no calibration figure without
        diagnostics).
    fiducial_mean, fiducial_cov
        ``(n_fid, 2)`` and ``(n_fid, 2, 2)`` posteriors of the tiles at sim 109's parameters
        (every realization), representative seed, physical units.
    """

    result_path: Path
    figure_path: Path
    calibration_path: Path | None
    record: Mapping[str, Any]
    figure_png: bytes
    calibration_png: bytes | None
    fiducial_mean: np.ndarray
    fiducial_cov: np.ndarray

    def to_metadata(self) -> dict[str, Any]:
        """The FoM, its scatter, the pulls and the calibration, as figures, tables and text."""
        r = self.record
        calib = r["calibration"]
        scatter = r["fom_scatter"]
        rows = [(name, r[name], what) for name, what in _FOM_TABLE_FIELDS]
        rows += [
            (f"fom_scatter_{k}", scatter[k], f"{k}-to-{k} std of the fiducial FoM")
            for k in ("tile", "realization", "seed")
        ]
        rows += [
            ("coverage_68", calib["coverage_68"], "test tiles inside their 68% ellipse"),
            ("coverage_95", calib["coverage_95"], "test tiles inside their 95% ellipse"),
        ]
        table = Table(
            {"quantity": "string", "value": "float", "meaning": "string"},
            [
                {"quantity": n, "value": float(v), "meaning": m}
                for n, v, m in rows
                if v is not None  # no realization or seed scatter with one of them
            ],
        )
        pulls = Table(
            {
                "point": "string",
                "param": "string",
                "offset": "float",
                "error": "float",
                "pull": "float",
                "flagged": "bool",
                "realizations": "int",
            },
            [
                {
                    "point": name,
                    "param": param,
                    "offset": p["offset"][j],
                    "error": p["offset_err"][j],
                    "pull": p["pull"][j],
                    "flagged": p["flagged"][j],
                    "realizations": p["n_realizations"],
                }
                for name, p in r["fiducial"]["points"].items()
                for j, param in enumerate(p["params"])
            ],
        )
        images = {"figure": Image(self.figure_png, "FoM report")}
        if self.calibration_png is not None:
            images["calibration"] = Image(self.calibration_png, "calibration, test split")
        return {
            "path": self.result_path,
            "figure_path": self.figure_path,
            "fom_fiducial_median": r["fom_fiducial_median"],
            "fom_fiducial_std": r["fom_fiducial_std"],
            "fom_seed_std": scatter["seed"],
            "fom_realization_std": scatter["realization"],
            "fom_prior": r["fom_prior"],
            "calibration_verdict": calib["verdict"],
            "coverage_68": calib["coverage_68"],
            "coverage_95": calib["coverage_95"],
            "n_test": calib["n_test"],
            "n_seeds": len(r["seeds"]),
            "n_fiducial_realizations": r["fiducial"]["n_realizations"],
            "compressor_loss": r.get("compressor_loss", "mse"),
            "fom": table,
            "pulls": pulls,
            "projection": Markdown(r["fiducial"]["projection"]["text"]),
            "fom_fiducial_all": r["fom_fiducial_all"],
            "r2_test": r["r2_test"],
            **images,
        }


_FOM_TABLE_FIELDS = (
    ("fom_fiducial_median", "median FoM at sim 109's parameters (median over NPE seeds)"),
    ("fom_fiducial_std", "std of the FoM over the fiducial tiles"),
    ("fom_test_median", "median FoM of the test tiles"),
    ("fom_test_lo_16", "16th percentile, test tiles"),
    ("fom_test_hi_84", "84th percentile, test tiles"),
    ("fom_prior", "FoM of the prior (training parameters)"),
)


def _calibration(
    mean: FloatArray, cov: FloatArray, theta: FloatArray, rng: np.random.Generator
) -> CalibrationReport | None:
    """The diagnostics, or None with fewer rows than :data:`MIN_ROWS`."""
    if len(mean) < MIN_ROWS:
        return None
    return calibration_diagnostics(mean, cov, theta, rng=rng, param_names=PARAM_NAMES)


def _too_few(n: int) -> dict[str, Any]:
    return {"verdict": "too few tiles", "n": int(n), "min_rows": MIN_ROWS}


def ensemble(posteriors: Sequence[Posteriors]) -> Posteriors:
    """
    The moment-matched Gaussian of the equal-weight mixture of several seeds' posteriors.

    Parameters
    ----------
    posteriors
        One ``(mean (n, d), cov (n, d, d))`` per seed.

    Returns
    -------
        ``(mean, cov)``: the mean of the means, and the mean covariance plus the covariance
        of the means (law of total covariance).
    """
    means = np.stack([m for m, _ in posteriors])  # (S, n, d)
    covs = np.stack([c for _, c in posteriors])  # (S, n, d, d)
    mean = means.mean(axis=0)
    dev = means - mean
    return mean, covs.mean(axis=0) + np.einsum("sni,snj->nij", dev, dev) / len(posteriors)


def finish_fom_report(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    *,
    summary: str,
    theta: FloatArray,
    sim_id: npt.NDArray[np.integer],
    split: Split,
    theta_mean: FloatArray,
    theta_std: FloatArray,
    fiducial: Sequence[Posteriors],
    test: Sequence[Posteriors],
    seeds: Sequence[int],
    compressor_checkpoint: Path,
    extra: Mapping[str, Any],
) -> FomReport:
    """
    The FoM record and figures of one configuration's posteriors, written atomically.

    Shared by the field-level report (:func:`lensing_core.inference.pipeline.fom_report`) and
    the power-spectrum one (:func:`lensing_core.inference.power_spectrum.cl_fom_report`), so
    both are the same record computed the same way.

    Parameters
    ----------
    root, lmax, noise_level
        The data root and the configuration.
    summary
        ``"field"`` or ``"cl"``: which report (the record's ``summary``, the figures' folders).
    theta
        ``(n_rows, 2)`` physical (Omega_m, S8) of every row; *sim_id* ``(n_rows,)``.
    split
        The rows' split (fiducial, test, compressor-train for the prior).
    theta_mean, theta_std
        ``(2,)`` the parameters' standardisation the NPE was trained in.
    fiducial, test
        One ``(mean (n, 2), cov (n, 2, 2))`` per NPE seed: standardised posteriors of the
        fiducial rows (every realization at every fiducial point) and of the test rows.
    seeds
        The NPE seeds, one per entry of *fiducial* and *test*.
    compressor_checkpoint
        The compressor the summaries came from.
    extra
        More record entries; ``r2_test`` (a mapping) is written with None for non-finite values.

    Raises
    ------
    ValueError
        Too few parameter points among the compressor-train rows for the prior's covariance,
        no tile at sim 109's parameters, or posteriors that do not match the seeds.
    """
    label = config_label(lmax, noise_level)
    if not len(seeds) == len(fiducial) == len(test) or not seeds:
        msg = f"{label}: {len(fiducial)}, {len(test)} posteriors for {len(seeds)} seeds"
        raise ValueError(msg)
    mean, std = np.asarray(theta_mean, np.float64), np.asarray(theta_std, np.float64)
    train_theta = (theta[split.compressor_train] - mean) / std
    n_points = len(np.unique(train_theta, axis=0))
    if n_points <= train_theta.shape[1]:
        msg = (
            f"{label}: the compressor-train tiles of {root.shards(lmax, noise_level).dir} "
            f"come from {n_points} parameter points, so the prior's covariance is singular; "
            f"the FoM needs tiles of at least {train_theta.shape[1] + 1} sims besides the "
            f"fiducial"
        )
        raise ValueError(msg)
    fid_rows = split.fiducial
    points = np.array([fiducial_point(i) for i in sim_id[fid_rows]], dtype=object)
    exact = points == "sim109"
    if not exact.any():
        msg = f"{label}: no tile at sim 109's parameters among the fiducial rows"
        raise ValueError(msg)
    test_theta = (theta[split.test] - mean) / std
    scale = float(np.prod(std))
    per_seed = [
        fom_summary(
            lmax=lmax,
            noise_level=noise_level,
            fiducial_cov=fid_cov[exact],
            test_mean=test_mean,
            test_cov=test_cov,
            test_theta=test_theta,
            train_theta=train_theta,
            theta_std=std,
            compressor_checkpoint=compressor_checkpoint,
        )
        for (_, fid_cov), (test_mean, test_cov) in zip(fiducial, test, strict=True)
    ]
    fom_seeds = np.array([r["fom_fiducial_median"] for r in per_seed])
    rep = int(np.argmin(np.abs(fom_seeds - np.median(fom_seeds))))
    record = per_seed[rep]
    (fid_mean, fid_cov), (test_mean, test_cov) = fiducial[rep], test[rep]
    fid_mean_phys, fid_cov_phys = to_physical(fid_mean, fid_cov, mean, std)
    fom_fid = np.atleast_1d(fom_from_cov(fid_cov)) / scale  # every fiducial row
    exact_ids = sim_id[fid_rows][exact]
    per_real = [float(np.median(fom_fid[exact][exact_ids == i])) for i in np.unique(exact_ids)]
    (ens_fid_mean, ens_fid_cov), (ens_test_mean, ens_test_cov) = ensemble(fiducial), ensemble(test)
    biases = fiducial_bias(
        to_physical(ens_fid_mean, ens_fid_cov, mean, std)[0],
        theta[fid_rows],
        sim_id[fid_rows],
        list(points),
        param_names=PARAM_NAMES,
    )
    rng = np.random.default_rng([int(lmax), int(seeds[0]), 2023])
    test_report = _calibration(ens_test_mean, ens_test_cov, test_theta, rng)
    fid_theta = (theta[fid_rows] - mean) / std
    fid_reports = {
        p: _calibration(
            ens_fid_mean[points == p], ens_fid_cov[points == p], fid_theta[points == p], rng
        )
        for p in biases
    }
    record.update(
        {
            "summary": summary,
            "config": config_name(lmax, noise_level),
            "fom_fiducial_median": float(np.median(fom_seeds)),
            "seeds": [int(s) for s in seeds],
            "representative_seed": int(seeds[rep]),
            "fom_seeds": fom_seeds.tolist(),
            "fom_scatter": {
                "tile": record["fom_fiducial_std"],
                "realization": float(np.std(per_real, ddof=1)) if len(per_real) > 1 else None,
                "seed": float(np.std(fom_seeds, ddof=1)) if len(seeds) > 1 else None,
            },
            "fom_realizations": per_real,
            "fom_ensemble_median": float(np.median(fom_from_cov(ens_fid_cov[exact]))) / scale,
            "fom_points": {p: float(np.median(fom_fid[points == p])) for p in biases},
            "fiducial_sim_id": FIDUCIAL_SIM_ID,
            "fiducial_theta": [float(v) for v in theta[fid_rows[exact][0]]],
            "fiducial_mean_all": fid_mean_phys[exact].tolist(),
            "fiducial": {
                "n_realizations": len(per_real),
                "points": {p: b.to_record() for p, b in biases.items()},
                "projection": projection_offset(biases),
            },
            "split_kind": split.kind,
            "split_sha256": split.sha256(),
            "n_sims": {name: len(ids) for name, ids in split.sims(sim_id).items()},
            "n_tiles": split.sizes(),
            **extra,
        }
    )
    calib = record["calibration"]
    calib.update(
        {
            "posterior": f"ensemble of {len(seeds)} NPE seed(s)",
            **{
                level_key(level): fraction
                for level, fraction in coverage(
                    ens_test_mean, ens_test_cov, test_theta, CALIBRATION_LEVELS
                ).items()
            },
            "verdict": test_report.verdict if test_report else _too_few(len(test_mean))["verdict"],
            "test": test_report.to_record() if test_report else _too_few(len(test_mean)),
            "fiducial": {
                p: rep_.to_record() if rep_ else _too_few(int((points == p).sum()))
                for p, rep_ in fid_reports.items()
            },
            "seed_verdicts": [
                coverage_curve(m, c, test_theta).verdict if len(m) >= MIN_ROWS else "too few tiles"
                for m, c in test
            ],
        }
    )
    if "r2_test" in record:  # None where the test sims share a value (too few of them)
        record["r2_test"] = {k: finite_or_none(v) for k, v in record["r2_test"].items()}
    png, figure_path = _fom_png(
        root,
        lmax,
        noise_level,
        summary,
        record,
        fid_mean_phys[exact],
        fid_cov_phys[exact],
        np.atleast_1d(fom_from_cov(test_cov)) / scale,
    )
    record["figure"] = str(figure_path)
    calib_png, calib_path = _calibration_png(root, lmax, noise_level, summary, test_report)
    record["calibration_figure"] = None if calib_path is None else str(calib_path)
    result_path = (
        root.npe(lmax, noise_level).fom_result
        if summary == "field"
        else root.cl_fom_result_path(lmax, noise_level)
    )
    write_fom_result(result_path, record, tmp_root=root.tmp_root)
    logger.info(
        "%s (%s): fiducial FoM %.1f (tile std %.1f, seed std %s, %d realizations, prior %.1f), "
        "calibration %s, in %s",
        label,
        summary,
        record["fom_fiducial_median"],
        record["fom_fiducial_std"],
        record["fom_scatter"]["seed"],
        len(per_real),
        record["fom_prior"],
        calib["verdict"],
        result_path,
    )
    return FomReport(
        result_path=result_path,
        figure_path=figure_path,
        calibration_path=calib_path,
        record=record,
        figure_png=png,
        calibration_png=calib_png,
        fiducial_mean=fid_mean_phys[exact],
        fiducial_cov=fid_cov_phys[exact],
    )


def _fom_png(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    summary: str,
    record: Mapping[str, Any],
    mean: FloatArray,
    cov: FloatArray,
    fom_test: FloatArray,
) -> tuple[bytes, Path]:
    calib, scatter = record["calibration"], record["fom_scatter"]
    seed_text = f", seed std {scatter['seed']:.0f}" if scatter["seed"] is not None else ""
    fig = fom_figure(
        mean,
        cov,
        record["fiducial_theta"],
        fom_test,
        fiducial_fom=record["fom_fiducial_all"],
        fom_prior=record["fom_prior"],
        title=(
            f"{config_name(lmax, noise_level)}, {SUMMARY_TITLES[summary]}: FoM "
            f"{record['fom_fiducial_median']:.0f} ± {record['fom_fiducial_std']:.0f}{seed_text} "
            f"(prior {record['fom_prior']:.0f}); coverage 68% {calib['coverage_68']:.2f}, "
            f"95% {calib['coverage_95']:.2f}: {calib['verdict']}"
        ),
    )
    png = figure_to_png_bytes(fig, dpi=80)
    path = root.fom_figure_path(lmax, noise_level, summary=summary)
    write_bytes(path, png, tmp_root=root.tmp_root)
    return png, path


def _calibration_png(
    root: DataRoot,
    lmax: int,
    noise_level: str,
    summary: str,
    report: CalibrationReport | None,
) -> tuple[bytes | None, Path | None]:
    """The calibration figure of the test split, or None without diagnostics (too few tiles)."""
    path = root.calibration_figure_path(lmax, noise_level, summary=summary)
    if report is None:
        path.unlink(missing_ok=True)  # an older report's
        return None, None
    title = f"{config_name(lmax, noise_level)}, {SUMMARY_TITLES[summary]}: test split"
    png = figure_to_png_bytes(calibration_figure(**report.figure_arrays(), title=title), dpi=80)
    write_bytes(path, png, tmp_root=root.tmp_root)
    return png, path
