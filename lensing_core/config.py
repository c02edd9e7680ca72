"""Platform settings from the environment: data root, kappa source, suite, tiling options.

Every setting has an environment variable, so that the source and the suite are chosen by
configuration, never by editing code:

=========================  =================================================================
``LENSING_DATA_ROOT``      data root (default: ``data/`` in the project checkout)
``LENSING_SOURCE``         ``synthetic`` (default), ``kappa_npz``, ``gower_street``
``LENSING_SUITE``          ``full`` (default), ``demo`` (sims 101-164) or ids like ``1-20,109``
``LENSING_NSIDE``          nside of synthetic and ray-traced maps (default 1024)
``LENSING_KAPPA_DIR``      ``kappa_npz``: directory holding ``sim00001/kappa_maps.npz``
``LENSING_SIMS_DIR``       ``gower_street``: directory holding ``sim00001/run.*.lightcone.npy``
``LENSING_CATALOG_CSV``    parameter table in the ``gower_street_runs.csv`` format
                           (required by ``gower_street``, optional otherwise)
``LENSING_NZ_FITS``        ``gower_street``: DES 2pt FITS file with the ``NZ_SOURCE`` n(z)
``LENSING_TILE_SCHEME``    ``belts`` (default) or ``legacy``
``LENSING_NOISE_CONVENTION``  ``per_component`` (default) or ``legacy``
``LENSING_TRAINING_PRESET``  compressor settings: ``full`` (default, EfficientNetV2-S) or
                           ``cpu_demo`` (``test_efficientnet``, minutes on a CPU)
``LENSING_ACCELERATOR``    where models train: ``auto`` (default: the GPU if there is one),
                           ``cpu``, ``gpu``
``LENSING_AUTOMATION``     ``on`` (default): the sensors and the nightly schedule start
                           running with the daemon; ``off``: they start stopped
=========================  =================================================================

Classes
-------
PlatformSettings
    The settings, with :meth:`PlatformSettings.from_env`, the configured catalog and source.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lensing_core.inference.config import COMPRESSOR_PRESETS
from lensing_core.sims.catalog import (
    FULL_SUITE_SIZE,
    PARAM_KEYS,
    SimCatalog,
    parse_suite,
    read_gower_street_csv,
    synthetic_catalog,
)
from lensing_core.sims.sources import (
    GowerStreetSource,
    KappaNpzSource,
    KappaSource,
    SyntheticSource,
)
from lensing_core.sky.noise import NOISE_CONVENTIONS
from lensing_core.sky.rotations import SCHEMES

SOURCES: tuple[str, ...] = ("synthetic", "kappa_npz", "gower_street")
ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu")


def default_data_root() -> Path:
    """``data/`` in the project checkout (or in the working directory for an installed copy)."""
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return base / "data"


@dataclass(frozen=True)
class PlatformSettings:
    """
    Settings of one deployment of the platform.

    Attributes
    ----------
    data_root
        Where every artifact is written.
    source
        Kappa source name, one of :data:`SOURCES`.
    suite
        Suite specification, see :func:`~lensing_core.sims.catalog.parse_suite`.
    nside
        Resolution of synthetic maps.
    kappa_dir
        Directory of the ``kappa_npz`` source.
    catalog_csv
        Parameter table (Gower Street format); required by ``gower_street``.
    sims_dir
        Directory of the Gower Street simulation folders.
    nz_fits
        DES 2pt FITS file of the source n(z) for ``gower_street``.
    scheme
        Tile orientation scheme.
    noise_convention
        Shape-noise convention.
    training_preset
        Compressor settings preset, a key of
        :data:`~lensing_core.inference.config.COMPRESSOR_PRESETS`.
    accelerator
        Where models train, one of :data:`ACCELERATORS`.
    automation
        Whether the sensors and the schedule run by default (``LENSING_AUTOMATION``).
    """

    data_root: Path
    source: str = "synthetic"
    suite: str = "full"
    nside: int = 1024
    kappa_dir: Path | None = None
    catalog_csv: Path | None = None
    sims_dir: Path | None = None
    nz_fits: Path | None = None
    scheme: str = "belts"
    noise_convention: str = "per_component"
    training_preset: str = "full"
    accelerator: str = "auto"
    automation: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            msg = f"LENSING_SOURCE={self.source!r} is not one of {SOURCES}"
            raise ValueError(msg)
        if self.scheme not in SCHEMES:
            msg = f"LENSING_TILE_SCHEME={self.scheme!r} is not one of {SCHEMES}"
            raise ValueError(msg)
        if self.noise_convention not in NOISE_CONVENTIONS:
            msg = (
                f"LENSING_NOISE_CONVENTION={self.noise_convention!r} "
                f"is not one of {NOISE_CONVENTIONS}"
            )
            raise ValueError(msg)
        if self.training_preset not in COMPRESSOR_PRESETS:
            msg = (
                f"LENSING_TRAINING_PRESET={self.training_preset!r} is not one of "
                f"{tuple(COMPRESSOR_PRESETS)}"
            )
            raise ValueError(msg)
        if self.accelerator not in ACCELERATORS:
            msg = f"LENSING_ACCELERATOR={self.accelerator!r} is not one of {ACCELERATORS}"
            raise ValueError(msg)
        if self.source == "kappa_npz" and self.kappa_dir is None:
            msg = (
                "LENSING_SOURCE=kappa_npz needs LENSING_KAPPA_DIR "
                "(the folder of sim00001/kappa_maps.npz)"
            )
            raise ValueError(msg)
        if self.source == "gower_street" and (self.sims_dir is None or self.catalog_csv is None):
            msg = (
                "LENSING_SOURCE=gower_street needs LENSING_SIMS_DIR (the folder of sim00001/ "
                "shell directories) and LENSING_CATALOG_CSV (the gower_street_runs.csv table)"
            )
            raise ValueError(msg)
        parse_suite(self.suite)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """Settings from ``LENSING_*`` environment variables (see the module docstring)."""
        env = os.environ if environ is None else environ

        def path(name: str) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value).expanduser().resolve() if value else None

        automation_text = env.get("LENSING_AUTOMATION", "on").strip().lower()
        if automation_text not in ("on", "off"):
            msg = f"LENSING_AUTOMATION={automation_text!r} is not 'on' or 'off'"
            raise ValueError(msg)
        nside_text = env.get("LENSING_NSIDE", "1024")
        try:
            nside = int(nside_text)
        except ValueError:
            msg = f"LENSING_NSIDE={nside_text!r} is not an integer"
            raise ValueError(msg) from None
        return cls(
            data_root=path("LENSING_DATA_ROOT") or default_data_root(),
            source=env.get("LENSING_SOURCE", "synthetic").strip(),
            suite=env.get("LENSING_SUITE", "full").strip(),
            nside=nside,
            kappa_dir=path("LENSING_KAPPA_DIR"),
            catalog_csv=path("LENSING_CATALOG_CSV"),
            sims_dir=path("LENSING_SIMS_DIR"),
            nz_fits=path("LENSING_NZ_FITS"),
            scheme=env.get("LENSING_TILE_SCHEME", "belts").strip(),
            noise_convention=env.get("LENSING_NOISE_CONVENTION", "per_component").strip(),
            training_preset=env.get("LENSING_TRAINING_PRESET", "full").strip(),
            accelerator=env.get("LENSING_ACCELERATOR", "auto").strip(),
            automation=automation_text == "on",
        )

    def catalog(self) -> SimCatalog:
        """The configured suite's catalog: the sims that become partitions."""
        wanted = parse_suite(self.suite)
        if self.catalog_csv is not None and self.source in ("synthetic", "gower_street"):
            base = read_gower_street_csv(self.catalog_csv)
        elif self.source == "synthetic":
            base = synthetic_catalog(max([FULL_SUITE_SIZE, *(wanted or [])]))
        else:
            assert self.kappa_dir is not None  # checked in __post_init__
            found = KappaNpzSource.discover(self.kappa_dir)
            table = read_gower_street_csv(self.catalog_csv) if self.catalog_csv else None
            nan = dict.fromkeys(PARAM_KEYS, math.nan)
            base = SimCatalog(
                {i: (table[i] if table is not None and i in table else nan) for i in found},
                name=f"{self.kappa_dir} ({self.catalog_csv or 'no parameter table'})",
            )
        if wanted is None:
            return base
        absent = [i for i in wanted if i not in base]
        if absent:
            msg = f"LENSING_SUITE={self.suite!r}: sims {absent[:10]} are not in {base.name}"
            raise ValueError(msg)
        return base.subset(wanted)

    def kappa_source(self, catalog: SimCatalog | None = None) -> KappaSource:
        """The configured kappa source over *catalog* (the configured one if not given)."""
        catalog = self.catalog() if catalog is None else catalog
        if self.source == "synthetic":
            return SyntheticSource(catalog, nside=self.nside)
        if self.source == "gower_street":
            assert self.sims_dir is not None  # checked in __post_init__
            return GowerStreetSource(self.sims_dir, catalog, nside=self.nside, nz_fits=self.nz_fits)
        assert self.kappa_dir is not None
        return KappaNpzSource(self.kappa_dir, catalog)
