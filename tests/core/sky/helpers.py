"""Helpers shared by the sky tests (random maps and alm)."""

from __future__ import annotations

import numpy as np

from lensing_core.sky.harmonics import n_alm, synthesize_rings


def random_red_maps(
    rng: np.random.Generator, n_maps: int, nside: int, *, lmax: int | None = None
) -> np.ndarray:
    """Gaussian maps with ``C_l = 1e-4 (10 / (l + 10))^2`` up to *lmax* (default 3 nside - 1)."""
    lmax = 3 * nside - 1 if lmax is None else lmax
    ell = np.concatenate([np.arange(m, lmax + 1) for m in range(lmax + 1)])
    amp = np.sqrt(1e-4) * 10.0 / (ell + 10.0)
    size = (n_maps, n_alm(lmax))
    alm = (rng.standard_normal(size) + 1j * rng.standard_normal(size)) * np.sqrt(0.5)
    alm[:, : lmax + 1] = rng.standard_normal((n_maps, lmax + 1))  # m = 0: real
    return synthesize_rings(alm * amp, nside)
