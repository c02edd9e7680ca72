"""Convergence-map sources: where the 4 tomographic kappa maps of a simulation come from.

Every source returns the same thing per sim: maps of shape ``(4, npix)``, RING ordering, one
nside, plus a provenance record.

Classes
-------
SyntheticSource
    Correlated lognormal maps drawn from theory spectra (offline, deterministic per sim).
KappaNpzSource
    Existing ``sim00001/kappa_maps.npz`` files (keys ``kappa_bin0..3``).
GowerStreetSource
    Born ray tracing of Gower Street light-cone shells, ``sim00001/run.NNNNN.lightcone.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lensing_core._types import FloatArray
from lensing_core.io import InputMissingError, file_sha256, read_npz
from lensing_core.sims.catalog import SimCatalog
from lensing_core.sky.healpix import check_maps
from lensing_core.storage import KAPPA_KEYS, stack_kappa_bins

SYNTHETIC_SEED_TAG = 7310  # separates the synthetic-map stream from other uses of a sim id


class KappaSource(Protocol):
    """What the kappa asset needs from a source."""

    name: str
    catalog: SimCatalog

    def describe(self) -> dict[str, Any]:
        """Source name and settings, for metadata."""
        ...

    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """Maps ``(4, npix)`` RING and a provenance record of one sim."""
        ...


@dataclass(frozen=True)
class SyntheticSource:
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
    """

    catalog: SimCatalog
    nside: int = 1024
    lmax: int | None = None
    name: str = "synthetic"

    def describe(self) -> dict[str, Any]:
        """Source settings for metadata."""
        from lensing_core.sims.synthetic import SYNTHETIC_RECIPE_VERSION

        return {
            "source": self.name,
            "nside": self.nside,
            "lmax": self.lmax or 2 * self.nside,
            "recipe_version": SYNTHETIC_RECIPE_VERSION,
            "catalog": self.catalog.name,
        }

    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """Draw the maps of *sim_id*; the generator is seeded from the sim id alone."""
        from lensing_core.sims.synthetic import synthetic_kappa

        params = self.catalog[sim_id]
        rng = np.random.default_rng([SYNTHETIC_SEED_TAG, sim_id])
        maps = synthetic_kappa(params, nside=self.nside, rng=rng, lmax=self.lmax)
        return maps, {**self.describe(), "seed": [SYNTHETIC_SEED_TAG, sim_id]}


@dataclass(frozen=True)
class KappaNpzSource:
    """
    Existing per-sim files laid out as ``{directory}/sim{ID:05d}/kappa_maps.npz``.

    Parameters
    ----------
    directory
        Root of the per-sim folders.
    catalog
        Parameters per sim (NaN where no parameter table was given).
    """

    directory: Path
    catalog: SimCatalog
    name: str = "kappa_npz"

    def path(self, sim_id: int) -> Path:
        """File of one sim."""
        return self.directory / f"sim{sim_id:05d}" / "kappa_maps.npz"

    def describe(self) -> dict[str, Any]:
        """Source settings for metadata."""
        return {"source": self.name, "directory": str(self.directory), "catalog": self.catalog.name}

    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """Read and validate the maps of *sim_id*, with the file's content hash."""
        path = self.path(sim_id)
        what = f"kappa maps of sim {sim_id}"
        arrays, _ = read_npz(path, KAPPA_KEYS, what=what)
        maps = stack_kappa_bins(arrays, what=f"{what} ({path})")
        check_maps(maps, what=f"{what} ({path})")
        return maps, {**self.describe(), "file": str(path), "sha256": file_sha256(path)}

    @staticmethod
    def discover(directory: Path) -> list[int]:
        """Sim ids of the ``sim?????/kappa_maps.npz`` files under *directory*."""
        ids = []
        for sim_dir in sorted(directory.glob("sim*")):
            suffix = sim_dir.name.removeprefix("sim")
            if suffix.isdigit() and (sim_dir / "kappa_maps.npz").is_file():
                ids.append(int(suffix))
        return ids


@dataclass(frozen=True)
class GowerStreetSource:
    """
    Convergence maps by Born ray tracing of Gower Street light-cone shells.

    Parameters
    ----------
    sims_dir
        Folder of the per-sim directories ``sim{ID:05d}/`` (each with ``control.par``,
        ``z_values.txt`` and ``run.NNNNN.lightcone.npy`` shells).
    catalog
        Parameters per sim, from the suite's parameter table.
    nside
        Output resolution of the maps.
    nz_fits
        DES 2pt FITS file whose ``NZ_SOURCE`` HDU gives the source n(z); the parametric
        DES-Y3-like stand-in if not given.
    """

    sims_dir: Path
    catalog: SimCatalog
    nside: int = 1024
    nz_fits: Path | None = None
    name: str = "gower_street"

    def sim_dir(self, sim_id: int) -> Path:
        """Directory of one simulation."""
        return self.sims_dir / f"sim{sim_id:05d}"

    def nz(self) -> tuple[FloatArray, FloatArray]:
        """The source n(z): ``(z, n)`` with ``n`` of shape ``(4, n_z)``."""
        from lensing_core.sims.nz import read_nz_source_fits
        from lensing_core.sims.theory import des_y3_like_nz

        return read_nz_source_fits(self.nz_fits) if self.nz_fits else des_y3_like_nz()

    def describe(self) -> dict[str, Any]:
        """Source settings for metadata."""
        return {
            "source": self.name,
            "sims_dir": str(self.sims_dir),
            "nside": self.nside,
            "nz": str(self.nz_fits) if self.nz_fits else "DES-Y3-like parametric stand-in",
            "catalog": self.catalog.name,
        }

    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """Ray-trace the shells of *sim_id* to 4 convergence maps."""
        sim_dir = self.sim_dir(sim_id)
        if not sim_dir.is_dir():
            msg = f"simulation directory of sim {sim_id} is missing: {sim_dir} does not exist"
            raise InputMissingError(msg)
        from lensing_core.sims.gower_street import born_convergence

        maps = born_convergence(sim_dir, self.catalog[sim_id], self.nz(), nside_out=self.nside)
        inputs = {
            name: file_sha256(sim_dir / name)
            for name in ("control.par", "z_values.txt")
            if (sim_dir / name).is_file()
        }
        shells = sorted(sim_dir.glob("*.lightcone.npy"))  # the prefix is achOutName
        return maps, {
            **self.describe(),
            "sim_dir": str(sim_dir),
            "sha256": inputs,
            "n_shell_files": len(shells),
            "shell_bytes": sum(p.stat().st_size for p in shells),
        }
