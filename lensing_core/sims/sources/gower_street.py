"""The gower_street source: Born ray tracing of the suite's light-cone shells."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensing_core._types import FloatArray
from lensing_core.io import InputMissingError, file_sha256
from lensing_core.sims.catalog import SimCatalog, read_gower_street_csv
from lensing_core.sims.sources.base import KappaSource, SourceSettings

logger = logging.getLogger(__name__)

#: The files besides the shells that a simulation's maps depend on.
CONTROL_FILES = ("control.par", "z_values.txt")


@dataclass(frozen=True)
class GowerStreetSource(KappaSource):
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
    catalog_csv
        The parameter table (named in messages).
    warn_unlisted
        Log a warning for a simulation directory without a row in the table (the full
        suite; a chosen suite leaves other directories out on purpose).
    """

    sims_dir: Path
    catalog: SimCatalog
    nside: int = 1024
    nz_fits: Path | None = None
    catalog_csv: Path | None = None
    warn_unlisted: bool = False

    name = "gower_street"

    @classmethod
    def check_settings(cls, settings: SourceSettings) -> None:
        """The simulations' folder and the parameter table must be given."""
        if settings.sims_dir is None or settings.catalog_csv is None:
            msg = (
                "LENSING_SOURCE=gower_street needs LENSING_SIMS_DIR (the folder of sim00001/ "
                "shell directories) and LENSING_CATALOG_CSV (the gower_street_runs.csv table)"
            )
            raise ValueError(msg)

    @classmethod
    def base_catalog(cls, settings: SourceSettings) -> SimCatalog:
        """The parameter table."""
        assert settings.catalog_csv is not None  # check_settings
        return read_gower_street_csv(settings.catalog_csv)

    @classmethod
    def with_catalog(cls, settings: SourceSettings, catalog: SimCatalog) -> GowerStreetSource:
        """The source over ``settings.sims_dir`` at ``settings.nside``."""
        assert settings.sims_dir is not None  # check_settings
        return cls(
            settings.sims_dir,
            catalog,
            nside=settings.nside,
            nz_fits=settings.nz_fits,
            catalog_csv=settings.catalog_csv,
            warn_unlisted=settings.suite.strip().lower() == "full",
        )

    def sim_dir(self, sim_id: int) -> Path:
        """Directory of one simulation."""
        return self.sims_dir / f"sim{sim_id:05d}"

    def nz(self) -> tuple[FloatArray, FloatArray]:
        """The source n(z) of ``nz_fits``, or the DES-Y3-like stand-in."""
        from lensing_core.sims.nz import read_nz_source_fits

        return read_nz_source_fits(self.nz_fits) if self.nz_fits else super().nz()

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
            for name in CONTROL_FILES
            if (sim_dir / name).is_file()
        }
        shells = sorted(sim_dir.glob("*.lightcone.npy"))  # the prefix is achOutName
        return maps, {
            **self.describe(),
            "sim_dir": str(sim_dir),
            "band_limit": self.band_limit(),
            "sha256": inputs,
            "n_shell_files": len(shells),
            "shell_bytes": sum(p.stat().st_size for p in shells),
        }

    def input_files(self, sim_id: int) -> list[Path]:
        """``control.par``, ``z_values.txt`` and every ``*.lightcone.npy`` shell of the sim."""
        sim_dir = self.sim_dir(sim_id)
        if not sim_dir.is_dir():
            msg = f"simulation directory of sim {sim_id} is missing: {sim_dir} does not exist"
            raise FileNotFoundError(msg)
        named = [sim_dir / n for n in CONTROL_FILES if (sim_dir / n).is_file()]
        return sorted(named + list(sim_dir.glob("*.lightcone.npy")))

    def discover(self) -> list[int]:
        """
        The ``sim?????/`` directories present that have a row in the parameter table.

        A directory without one is left out (its parameters are unknown), with a warning
        for the full suite.
        """
        present = []
        for sim_dir in sorted(self.sims_dir.glob("sim*")):
            suffix = sim_dir.name.removeprefix("sim")
            if not (suffix.isdigit() and sim_dir.is_dir()):
                continue
            if int(suffix) in self.catalog:
                present.append(int(suffix))
            elif self.warn_unlisted:
                logger.warning("%s has no row in %s: left out", sim_dir, self.catalog_csv)
        return sorted(present)

    def how_to_add(self, sim_id: int) -> str:
        """Its shells in place and its row in the table."""
        return (
            f"put its shells in {self.sim_dir(sim_id)} and its row in "
            f"{self.catalog_csv or 'the parameter table'}"
        )
