"""A source added in one module and one registry entry works through kappa_maps and tiles."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from lensing_assets import build_defs
from lensing_assets.defs.resources import platform_resources
from lensing_core.config import PlatformSettings
from lensing_core.sims import sources
from lensing_core.sims.catalog import SimCatalog, synthetic_catalog
from lensing_core.sims.sources import KappaSource, SourceSettings, register_source
from lensing_core.storage import DataRoot
from tests.fixtures.dagster import ephemeral_instance, settings_for


@dataclass(frozen=True)
class ToySource(KappaSource):
    """Gaussian white-noise maps whose amplitude grows with the bin, for sims 1-5."""

    catalog: SimCatalog
    nside: int = 128

    name = "toy"

    @classmethod
    def base_catalog(cls, settings: SourceSettings) -> SimCatalog:
        return synthetic_catalog(5)

    @classmethod
    def with_catalog(cls, settings: SourceSettings, catalog: SimCatalog) -> ToySource:
        return cls(catalog, nside=settings.nside)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "nside": self.nside, "catalog": self.catalog.name}

    def load(self, sim_id: int) -> tuple[np.ndarray, dict[str, Any]]:
        rng = np.random.default_rng(sim_id)
        scale = 1e-3 * np.arange(1, 5)[:, None]
        return scale * rng.standard_normal((4, 12 * self.nside**2)), self.describe()


@pytest.fixture
def toy_registered() -> Iterator[None]:
    register_source(ToySource)
    yield
    sources.SOURCES.pop(ToySource.name)


@pytest.mark.usefixtures("toy_registered")
def test_a_registered_source_makes_kappa_maps_and_tiles(data_root: Path) -> None:
    assert PlatformSettings.from_env({"LENSING_SOURCE": "toy"}).source.name == "toy"
    settings = settings_for(data_root, source=SourceSettings(name="toy", nside=128))
    assert settings.kappa_source().discover() == [1, 2, 3, 4, 5]
    defs = build_defs(settings)
    resources = platform_resources(settings)
    instance = ephemeral_instance(range(1, 6))
    for asset, key in (("kappa_maps", "3"), ("tiles", "3|200")):
        result = dg.materialize(
            [defs.get_assets_def(asset)], partition_key=key, resources=resources, instance=instance
        )
        assert result.success
    root = DataRoot(data_root)
    maps, meta = root.read_kappa(3)
    np.testing.assert_allclose(maps, ToySource(synthetic_catalog(5)).load(3)[0], rtol=1e-6)
    assert meta["provenance"]["source"] == "toy"
    by_noise, tiles_meta = root.read_tiles(3, 200, ("noiseless",))
    assert by_noise["noiseless"].shape == (12, 4, 128, 128)
    assert tiles_meta["source"]["source"] == "toy"
