"""Fixtures of the sky tests.

The shared input maps are small (nside 32) so that every transform is fast, and session-scoped,
hence read-only.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.sky.helpers import random_red_maps

KAPPA_NSIDE = 32


@pytest.fixture(scope="session")
def kappa32() -> np.ndarray:
    """
    Four random nside-32 RING maps (4, 12288), float64, read-only.

    Their spectrum is red, with power at every ell up to 95 = 3 nside - 1, above every tile
    band limit used in the sky tests.
    """
    maps = random_red_maps(np.random.default_rng(32_109), 4, KAPPA_NSIDE)
    maps.setflags(write=False)
    return maps
