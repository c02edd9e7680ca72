"""The kappa_npz source: existing per-sim ``kappa_maps.npz`` files, as cloud pipelines wrote."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensing_core._types import FloatArray
from lensing_core.io import file_sha256, read_npz
from lensing_core.sims.catalog import PARAM_KEYS, SimCatalog, read_gower_street_csv
from lensing_core.sims.sources.base import KappaSource, SourceSettings
from lensing_core.sky.healpix import check_maps
from lensing_core.storage import KAPPA_KEYS, stack_kappa_bins

FILE_NAME = "kappa_maps.npz"


def sim_ids_with(directory: Path, name: str) -> list[int]:
    """Sorted ids of the ``sim?????/`` folders of *directory* that hold *name*."""
    ids = []
    for sim_dir in sorted(directory.glob("sim*")):
        suffix = sim_dir.name.removeprefix("sim")
        if suffix.isdigit() and (sim_dir / name).exists():
            ids.append(int(suffix))
    return ids


@dataclass(frozen=True)
class KappaNpzSource(KappaSource):
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

    name = "kappa_npz"

    @classmethod
    def check_settings(cls, settings: SourceSettings) -> None:
        """The folder of the files must be given."""
        if settings.kappa_dir is None:
            msg = (
                "LENSING_SOURCE=kappa_npz needs LENSING_KAPPA_DIR "
                "(the folder of sim00001/kappa_maps.npz)"
            )
            raise ValueError(msg)

    @classmethod
    def base_catalog(cls, settings: SourceSettings) -> SimCatalog:
        """The sims whose file exists; parameters from the table if given, else NaN."""
        assert settings.kappa_dir is not None  # check_settings
        table = read_gower_street_csv(settings.catalog_csv) if settings.catalog_csv else None
        nan = dict.fromkeys(PARAM_KEYS, math.nan)
        return SimCatalog(
            {
                i: (table[i] if table is not None and i in table else nan)
                for i in sim_ids_with(settings.kappa_dir, FILE_NAME)
            },
            name=f"{settings.kappa_dir} ({settings.catalog_csv or 'no parameter table'})",
        )

    @classmethod
    def with_catalog(cls, settings: SourceSettings, catalog: SimCatalog) -> KappaNpzSource:
        """The source over ``settings.kappa_dir``."""
        assert settings.kappa_dir is not None  # check_settings
        return cls(settings.kappa_dir, catalog)

    def path(self, sim_id: int) -> Path:
        """File of one sim."""
        return self.directory / f"sim{sim_id:05d}" / FILE_NAME

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
        return maps, {
            **self.describe(),
            "file": str(path),
            "band_limit": self.band_limit(),
            "sha256": file_sha256(path),
        }

    def input_files(self, sim_id: int) -> list[Path]:
        """The sim's ``kappa_maps.npz``."""
        path = self.path(sim_id)
        if not path.is_file():
            msg = f"input of sim {sim_id} is missing: {path} does not exist"
            raise FileNotFoundError(msg)
        return [path]

    def discover(self) -> list[int]:
        """The configured sims whose file is there now."""
        return [i for i in sim_ids_with(self.directory, FILE_NAME) if i in self.catalog]

    def how_to_add(self, sim_id: int) -> str:
        """Put its file in place."""
        return f"put its maps at {self.path(sim_id)}"
