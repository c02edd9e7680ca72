"""Resources: the data root, the kappa source, the tiling options, the Hub push, training."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from lensing_core.config import PlatformSettings
from lensing_core.inference.config import CompressorConfig, compressor_preset
from lensing_core.sims.sources import KappaSource
from lensing_core.storage import DataRoot


class LensingStorage(dg.ConfigurableResource):
    """The data root every artifact is written under (``LENSING_DATA_ROOT``)."""

    root: str

    def data_root(self) -> DataRoot:
        """Paths and checked I/O of the data root."""
        return DataRoot(Path(self.root))


class KappaSourceResource(dg.ConfigurableResource):
    """Where kappa maps come from: ``synthetic``, ``kappa_npz`` or ``gower_street``."""

    source: str = "synthetic"
    suite: str = "full"
    nside: int = 1024
    kappa_dir: str | None = None
    catalog_csv: str | None = None
    sims_dir: str | None = None
    nz_fits: str | None = None

    def settings(self) -> PlatformSettings:
        """The core settings these fields describe."""
        return PlatformSettings(
            data_root=Path("."),
            source=self.source,
            suite=self.suite,
            nside=self.nside,
            kappa_dir=Path(self.kappa_dir) if self.kappa_dir else None,
            catalog_csv=Path(self.catalog_csv) if self.catalog_csv else None,
            sims_dir=Path(self.sims_dir) if self.sims_dir else None,
            nz_fits=Path(self.nz_fits) if self.nz_fits else None,
        )

    def build(self) -> KappaSource:
        """The configured source over the configured suite."""
        return self.settings().kappa_source()


class TilingResource(dg.ConfigurableResource):
    """Tile options: orientation scheme, noise convention, analysis iterations."""

    scheme: str = "belts"
    noise_convention: str = "per_component"
    n_iter: int = 3


class HfHubResource(dg.ConfigurableResource):
    """Optional push of the dataset revision to the Hugging Face Hub.

    Nothing is pushed without a repository id; the token is read from the environment
    variable named by ``token_env`` at run time and never stored or shown.
    """

    repo_id: str | None = None
    token_env: str = "HF_TOKEN"

    def token(self) -> str | None:
        """The token from the environment, if set."""
        return os.environ.get(self.token_env) or None


class TrainingResource(dg.ConfigurableResource):
    """How models train: the compressor preset and the accelerator.

    ``preset`` names :data:`lensing_core.inference.config.COMPRESSOR_PRESETS` (the run config
    of ``compressor_model`` overrides single fields); ``accelerator`` ``"auto"`` takes the GPU
    when there is one and the CPU otherwise.
    """

    preset: str = "full"
    accelerator: str = "auto"

    def compressor_config(self) -> CompressorConfig:
        """The preset's compressor settings."""
        return compressor_preset(self.preset)

    def device(self) -> str:
        """Torch device name for the NPE and the report: ``auto``, ``cpu`` or ``cuda``."""
        return "cuda" if self.accelerator == "gpu" else self.accelerator


def resources_from(settings: PlatformSettings) -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the platform settings."""
    return {
        "storage": LensingStorage(root=str(settings.data_root)),
        "kappa_source": KappaSourceResource(
            source=settings.source,
            suite=settings.suite,
            nside=settings.nside,
            kappa_dir=str(settings.kappa_dir) if settings.kappa_dir else None,
            catalog_csv=str(settings.catalog_csv) if settings.catalog_csv else None,
            sims_dir=str(settings.sims_dir) if settings.sims_dir else None,
            nz_fits=str(settings.nz_fits) if settings.nz_fits else None,
        ),
        "tiling": TilingResource(
            scheme=settings.scheme, noise_convention=settings.noise_convention
        ),
        "hf_hub": HfHubResource(repo_id=os.environ.get("LENSING_HF_REPO_ID") or None),
        "training": TrainingResource(
            preset=settings.training_preset, accelerator=settings.accelerator
        ),
    }
