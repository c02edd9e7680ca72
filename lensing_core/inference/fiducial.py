"""Bias of the posterior at the fiducial: pulls per fiducial point and the projection offset.

The fiducial cosmology is realized K times at each of two points
(:func:`lensing_core.sims.catalog.fiducial_realizations`): ``"sim109"``, sim 109's exact
parameters, and ``"prior_centre"``, the same (Omega_m, S8) with the parameters the NPE does
not infer (w, h, n_s, Omega_b h^2, m_nu) at the centre of their prior. Each realization gives
``n_r`` tiles (12 faces), each tile a posterior mean.

Per point, :func:`point_bias` measures the offset of the mean posterior mean from the truth:

- per realization ``r``: ``m_r``, the mean of its ``n_r`` tiles' posterior means;
- the tile scatter ``s_t``: the pooled standard deviation of the posterior means within a
  realization;
- the offset ``b = mean_r(m_r) - theta`` and its standard error
  ``s = sqrt(max(var_r(m_r), s_t^2 / n) / K)`` (``ddof = 1``, ``n`` the mean tiles per
  realization). The spread of the ``m_r`` holds both the tile scatter (``s_t^2 / n``) and the
  realization-to-realization scatter (cosmic variance beyond one sky), so it counts both;
  from few realizations it can come out below the tile part alone, which is known far better
  (from every tile), so that part is its floor. With one realization (K = 1, e.g. Gower
  Street) ``s = s_t / sqrt(n)`` leaves out cosmic variance beyond that sky: the record says so;
- the pull ``b / s``.

A parameter is *flagged* when ``|pull| > FLAG_PULL`` (3). At the prior-centre point the
projection effect should be smallest, so a flag there points to a fault of the pipeline (or
to an NPE trained on too few sims, or to a projection left by a non-linear model). The false-alarm
rate of an unbiased point, measured on toys of 12 tiles per realization
(``tests/core/inference/test_fiducial.py``): 0.3-0.5% for K = 4 and 0.2-0.4% for K = 16 when
the realization scatter is below the tile part, up to 5% (K = 4) and 1% (K = 16) when it is as
large as the tile scatter itself, and 1-2% for K = 1 without realization scatter. At sim 109
the w of the sim (-0.679) is far from the prior's centre (-1.065), and marginalising over it
moves the posterior: :func:`projection_offset` gives the
difference of the two points' offsets and says in words which it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lensing_core._types import FloatArray

#: Pulls beyond this (in absolute value) are flagged.
FLAG_PULL = 3.0

#: The fiducial points, in report order, and how the report names them.
POINT_TITLES: Mapping[str, str] = {
    "sim109": "sim 109's parameters",
    "prior_centre": "same Omega_m and S8, other parameters at the prior's centre",
}


@dataclass(frozen=True)
class PointBias:
    """
    The offset of the posterior means from the truth at one fiducial point.

    Attributes
    ----------
    point
        ``"sim109"`` or ``"prior_centre"``.
    theta
        ``(d,)`` the truth.
    sim_ids
        The K realizations (sims) at the point.
    n_tiles
        ``(K,)`` tiles per realization.
    offset, offset_err
        ``(d,)`` mean posterior mean minus truth, and its standard error.
    pull
        ``(d,)`` ``offset / offset_err``.
    tile_std
        ``(d,)`` pooled standard deviation of the posterior means within a realization.
    realization_std
        ``(d,)`` standard deviation of the realizations' mean posterior means, or None (K = 1).
    realization_pulls
        ``(K, d)`` per realization, ``(m_r - theta) / (tile_std / sqrt(n_r))``: how far each
        realization's mean sits from the truth in units of its tile scatter.
    flagged
        ``(d,)`` ``|pull| > FLAG_PULL``.
    param_names
        The ``d`` parameters.
    """

    point: str
    theta: FloatArray
    sim_ids: tuple[int, ...]
    n_tiles: tuple[int, ...]
    offset: FloatArray
    offset_err: FloatArray
    pull: FloatArray
    tile_std: FloatArray
    realization_std: FloatArray | None
    realization_pulls: FloatArray
    flagged: npt.NDArray[np.bool_]
    param_names: tuple[str, ...]

    @property
    def n_realizations(self) -> int:
        """K, the realizations at the point."""
        return len(self.sim_ids)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready mapping of every attribute (arrays as lists)."""

        def floats(a: Any) -> list[Any]:
            return np.asarray(a, dtype=np.float64).tolist()

        return {
            "point": self.point,
            "title": POINT_TITLES.get(self.point, self.point),
            "params": list(self.param_names),
            "theta": floats(self.theta),
            "sim_ids": list(self.sim_ids),
            "n_realizations": self.n_realizations,
            "n_tiles": list(self.n_tiles),
            "offset": floats(self.offset),
            "offset_err": floats(self.offset_err),
            "pull": floats(self.pull),
            "tile_std": floats(self.tile_std),
            "realization_std": None
            if self.realization_std is None
            else floats(self.realization_std),
            "realization_pulls": floats(self.realization_pulls),
            "flagged": [bool(f) for f in self.flagged],
            "error_counts": "tile and realization scatter"
            if self.n_realizations > 1
            else "tile scatter only (one realization: cosmic variance beyond it is not counted)",
        }


def point_bias(
    mean: npt.ArrayLike,
    theta: npt.ArrayLike,
    sim_id: npt.ArrayLike,
    *,
    point: str,
    param_names: Sequence[str] = ("Omega_m", "S8"),
) -> PointBias:
    """
    Offset, standard error and pull of the posterior means of one fiducial point's tiles.

    Parameters
    ----------
    mean
        ``(n, d)`` posterior means of the point's tiles, physical units.
    theta
        ``(d,)`` or ``(n, d)`` the truth (one value for every tile).
    sim_id
        ``(n,)`` the realization (sim) of each tile.
    point
        The point's name, for the record.
    param_names
        The ``d`` parameters.

    Returns
    -------
        A :class:`PointBias` (see the module's docstring for the statistics).

    Raises
    ------
    ValueError
        Shapes that do not match, tiles of one point with different truths, non-finite
        means, fewer than two tiles in a realization, or zero scatter.
    """
    mean = np.asarray(mean, dtype=np.float64)
    sim_id = np.asarray(sim_id).astype(np.int64)
    if mean.ndim != 2 or sim_id.shape != (len(mean),):
        msg = f"expected mean (n, d) and sim_id (n,), got {mean.shape} and {sim_id.shape}"
        raise ValueError(msg)
    d = mean.shape[1]
    truth = np.asarray(theta, dtype=np.float64)
    if truth.ndim == 2:
        if truth.shape != mean.shape or not np.allclose(truth, truth[0], rtol=1e-9, atol=0):
            msg = f"fiducial point {point}: its tiles do not share one truth"
            raise ValueError(msg)
        truth = truth[0]
    if truth.shape != (d,) or len(param_names) != d:
        msg = f"expected theta ({d},) and {d} param_names, got {truth.shape}, {param_names}"
        raise ValueError(msg)
    if not np.all(np.isfinite(mean)):
        msg = f"fiducial point {point}: non-finite posterior means"
        raise ValueError(msg)
    ids, inverse, counts = np.unique(sim_id, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        msg = (
            f"fiducial point {point}: sim {ids[np.argmin(counts)]} has {counts.min()} tile; "
            "each realization needs at least 2"
        )
        raise ValueError(msg)
    k = len(ids)
    m_r = np.stack([mean[inverse == j].mean(axis=0) for j in range(k)])  # (K, d)
    resid = mean - m_r[inverse]
    tile_std = np.sqrt((resid**2).sum(axis=0) / (len(mean) - k))  # pooled, (d,)
    offset = m_r.mean(axis=0) - truth
    floor = tile_std**2 / (len(mean) / k)  # the tile part of var(m_r)
    realization_std = m_r.std(axis=0, ddof=1) if k > 1 else None
    between = realization_std**2 if realization_std is not None else floor
    err = np.sqrt(np.maximum(between, floor) / k)
    if not np.all(err > 0):
        msg = f"fiducial point {point}: the posterior means do not scatter; no error to judge by"
        raise ValueError(msg)
    pull = offset / err
    return PointBias(
        point=point,
        theta=truth,
        sim_ids=tuple(int(i) for i in ids),
        n_tiles=tuple(int(c) for c in counts),
        offset=offset,
        offset_err=err,
        pull=pull,
        tile_std=tile_std,
        realization_std=realization_std,
        realization_pulls=(m_r - truth) / (tile_std / np.sqrt(counts)[:, None]),
        flagged=np.abs(pull) > FLAG_PULL,
        param_names=tuple(param_names),
    )


def fiducial_bias(
    mean: npt.ArrayLike,
    theta: npt.ArrayLike,
    sim_id: npt.ArrayLike,
    points: Sequence[str | None],
    *,
    param_names: Sequence[str] = ("Omega_m", "S8"),
) -> dict[str, PointBias]:
    """
    :func:`point_bias` of each fiducial point among some tiles.

    Parameters
    ----------
    mean, theta, sim_id
        ``(n, d)``, ``(n, d)``, ``(n,)``: every fiducial tile.
    points
        ``(n,)`` the point of each tile (:func:`lensing_core.sims.catalog.fiducial_point`).
    param_names
        The ``d`` parameters.

    Returns
    -------
        ``{point: PointBias}`` in :data:`POINT_TITLES` order, for the points present.
    """
    mean, theta = np.asarray(mean, dtype=np.float64), np.asarray(theta, dtype=np.float64)
    sim_id, labels = np.asarray(sim_id), np.asarray(points, dtype=object)
    order = [p for p in POINT_TITLES if p in set(labels)]
    order += sorted({str(p) for p in labels if p is not None} - set(order))
    return {
        p: point_bias(
            mean[labels == p],
            theta[labels == p],
            sim_id[labels == p],
            point=p,
            param_names=param_names,
        )
        for p in order
    }


def projection_offset(biases: Mapping[str, PointBias]) -> dict[str, Any]:
    """
    The projection offset: the posterior's offset at sim 109 minus that at the prior's centre.

    Parameters
    ----------
    biases
        :func:`fiducial_bias`'s result.

    Returns
    -------
        ``{"available", "offset", "offset_err", "pull", "fault", "text"}``: the difference
        of the two points' offsets per parameter, its error (the two errors in quadrature)
        and pull; ``fault`` lists the parameters flagged at the prior's centre (a pipeline
        fault); ``text`` says it in words. Without both points, ``available`` is False,
        the numbers are None and the text says why.
    """
    exact, centre = biases.get("sim109"), biases.get("prior_centre")
    if exact is None or centre is None:
        one = exact or centre
        k = one.n_realizations if one is not None else 0
        text = (
            f"One fiducial point only ({k} realization{'s' if k != 1 else ''} at "
            f"{POINT_TITLES.get(one.point, one.point) if one else 'none'}): the projection "
            "offset cannot be measured. A source of real simulations has sim 109 alone; "
            "the synthetic source makes realizations at both points "
            "(LENSING_FIDUCIAL_REALIZATIONS)."
        )
        if one is not None:
            text = f"{_offset_words(one)} {text}"
        return {
            "available": False,
            "offset": None,
            "offset_err": None,
            "pull": None,
            "fault": [],
            "text": text,
        }
    diff = exact.offset - centre.offset
    err = np.hypot(exact.offset_err, centre.offset_err)
    names = exact.param_names
    fault = [n for n, f in zip(names, centre.flagged, strict=True) if f]
    words = [_offset_words(exact), _offset_words(centre)]
    diff_words = ", ".join(
        f"{n} {v:+.4f} ± {e:.4f}" for n, v, e in zip(names, diff, err, strict=True)
    )
    if fault:
        verdict = (
            f"The posterior is biased at the prior's centre in {', '.join(fault)}, where the "
            "projection effect should be smallest: look for a fault of the pipeline "
            "(compressor, NPE, data) before calling the offset at sim 109 a projection "
            "effect; too few NPE training sims and a remaining non-linear projection are "
            "the other candidates."
        )
    else:
        verdict = (
            "The posterior is unbiased at the prior's centre, so the offset at sim 109 "
            "is the projection effect of marginalising over the parameters not inferred "
            "(sim 109's w, h, n_s, Omega_b h^2 and m_nu are not at the prior's centre), "
            "not a fault of the pipeline."
        )
    text = " ".join([*words, f"Projection offset (sim 109 minus centre): {diff_words}.", verdict])
    return {
        "available": True,
        "offset": diff.tolist(),
        "offset_err": err.tolist(),
        "pull": (diff / err).tolist(),
        "fault": fault,
        "text": text,
    }


def _offset_words(b: PointBias) -> str:
    parts = ", ".join(
        f"{n} {o:+.4f} ± {e:.4f} (pull {p:+.1f}{', flagged' if f else ''})"
        for n, o, e, p, f in zip(
            b.param_names, b.offset, b.offset_err, b.pull, b.flagged, strict=True
        )
    )
    k = b.n_realizations
    return (
        f"At {POINT_TITLES.get(b.point, b.point)} ({k} realization{'s' if k != 1 else ''}, "
        f"{sum(b.n_tiles)} tiles), mean posterior mean minus truth: {parts}."
    )
