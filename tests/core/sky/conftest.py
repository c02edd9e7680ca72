"""Fixtures of the sky tests.

Fixtures
--------
kappa32
    Session-scoped, read-only stack of 4 random nside-32 RING maps with a red spectrum up to
    ell = 3 nside - 1 (power above every tile band limit used here).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.sky.helpers import random_red_maps

KAPPA_NSIDE = 32


@pytest.fixture(scope="session")
def kappa32() -> np.ndarray:
    """Four random nside-32 maps (4, 12288), float64, power at every ell up to 95."""
    maps = random_red_maps(np.random.default_rng(32_109), 4, KAPPA_NSIDE)
    maps.setflags(write=False)
    return maps
