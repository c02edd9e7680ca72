"""Science library of the lensing platform: sky maps, simulations, datasets, inference.

Plain scientific Python (this package never imports Dagster). Simulated convergence maps
(:mod:`lensing_core.sims`) are cut into flat tiles (:mod:`lensing_core.sky`), written as a
parquet training dataset (:mod:`lensing_core.dataset`) and used to train a compressor and a
posterior estimator that give the figure of merit (:mod:`lensing_core.inference`).
"""

from __future__ import annotations

__version__ = "0.1.0"
