"""The synthetic source: correlated lognormal maps from pyccl theory spectra, offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from lensing_core._types import FloatArray
from lensing_core.sims.catalog import (
    FIDUCIAL_SIM_ID,
    FULL_SUITE_SIZE,
    SimCatalog,
    default_fiducial_realizations,
    fiducial_point,
    fiducial_realizations,
    parse_suite,
    read_gower_street_csv,
    synthetic_catalog,
)
from lensing_core.sims.sources.base import KappaSource, SourceSettings, select_suite

if TYPE_CHECKING:
    from lensing_core.sims.synthetic import ShiftChoice

SYNTHETIC_SEED_TAG = 7310  # separates the synthetic-map stream from other uses of a sim id


@dataclass(frozen=True)
class SyntheticSource(KappaSource):
    """
    Correlated lognormal convergence maps from pyccl theory spectra.

    Parameters
    ----------
    catalog
        Cosmological parameters per sim.
    nside
        Output resolution.
    lmax
        Band limit of the generated fields; ``2 * nside`` if not given.
    shift
        Lognormal shift recipe, one of :data:`lensing_core.sims.synthetic.SHIFT_CHOICES`
        (see :func:`lensing_core.sims.synthetic.lognormal_shifts`).
    """

    catalog: SimCatalog
    nside: int = 1024
    lmax: int | None = None
    shift: str = "hilbert2011_scaled"

    name = "synthetic"
    makes_fiducial_realizations = True

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> SyntheticSource:
        """
        The source over the configured suite and the extra realizations of the fiducial.

        The suite's sims, plus, when it holds sim 109, ``K - 1`` more realizations at sim
        109's parameters and ``K`` at the prior-centre point
        (:func:`~lensing_core.sims.catalog.fiducial_realizations`), ``K`` from
        ``settings.fiducial_realizations`` or the suite's default.
        """
        cls.check_settings(settings)
        base = cls.base_catalog(settings)
        suite = select_suite(base, settings.suite)
        if FIDUCIAL_SIM_ID in suite:
            suite = base.subset(sorted({*suite, *(i for i in base if fiducial_point(i))}))
        return cls.with_catalog(settings, suite)

    @classmethod
    def base_catalog(cls, settings: SourceSettings) -> SimCatalog:
        """The parameter table, else the synthetic design; and the fiducial's realizations."""
        if settings.catalog_csv is not None:
            table = read_gower_street_csv(settings.catalog_csv)
        else:
            wanted = parse_suite(settings.suite) or []
            table = synthetic_catalog(max([FULL_SUITE_SIZE, *wanted]))
        k = settings.fiducial_realizations or default_fiducial_realizations(settings.suite)
        extra = fiducial_realizations(k)
        return SimCatalog({**{i: table[i] for i in table}, **extra}, name=table.name)

    @classmethod
    def with_catalog(cls, settings: SourceSettings, catalog: SimCatalog) -> SyntheticSource:
        """The source at ``settings.nside`` with the shift recipe ``settings.synthetic_shift``."""
        return cls(catalog, nside=settings.nside, shift=settings.synthetic_shift)

    def band_limit(self) -> int:
        """The band limit of the generated fields: ``lmax``, or ``2 * nside``."""
        return self.lmax or 2 * self.nside

    def describe(self) -> dict[str, Any]:
        """Source settings for metadata."""
        from lensing_core.sims.synthetic import SYNTHETIC_RECIPE_VERSION

        return {
            "source": self.name,
            "nside": self.nside,
            "lmax": self.band_limit(),
            "shift": self.shift,
            "recipe_version": SYNTHETIC_RECIPE_VERSION,
            "catalog": self.catalog.name,
        }

    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """Draw the maps of *sim_id*; the generator is seeded from the sim id alone."""
        from lensing_core.sims.synthetic import synthetic_kappa

        params = self.catalog[sim_id]
        rng = np.random.default_rng([SYNTHETIC_SEED_TAG, sim_id])
        maps = synthetic_kappa(
            params,
            nside=self.nside,
            rng=rng,
            lmax=self.lmax,
            shift=cast("ShiftChoice", self.shift),  # an unknown name is a ValueError there
        )
        return maps, {
            **self.describe(),
            "band_limit": self.band_limit(),
            "seed": [SYNTHETIC_SEED_TAG, sim_id],
        }
