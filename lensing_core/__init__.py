"""Science library of the lensing platform: sky maps, simulations, datasets, inference.

Plain scientific Python: this package never imports Dagster.

Subpackages
-----------
sky
    HEALPix helpers, harmonic transforms, rotations, shape noise, flat tiles.
sims
    Simulation catalogs and convergence-map sources.
"""

from __future__ import annotations

__version__ = "0.1.0"
