"""Resources: the core objects the assets work with, made from the settings in one place.

Each resource is a frozen dataclass of ``lensing_core`` (or, for the kappa source, a factory of
one), so an asset receives exactly what the core functions take. The kappa source is built
anew for every run and sensor tick: it reads its parameter table and folders then, so sims
added to the source are seen without restarting anything.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from lensing_core.config import PlatformSettings
from lensing_core.storage import DataRoot


def platform_resources(settings: PlatformSettings) -> dict[str, Any]:
    """
    The resources of the definitions, by the names the assets use.

    ``storage``
        :class:`~lensing_core.storage.DataRoot` of ``settings.data_root``.
    ``kappa_source``
        The configured :class:`~lensing_core.sims.sources.KappaSource`, built per run.
    ``tiling``
        :class:`~lensing_core.sky.tiles.TilingOptions`.
    ``hf_hub``
        :class:`~lensing_core.dataset.hf.HubTarget` (the token is read only when pushing).
    ``training``
        :class:`~lensing_core.inference.config.TrainingSettings`.
    ``cluster``
        :class:`~lensing_core.cluster.ClusterSettings`: where batches of kappa maps and tiles
        run (the cluster is opened by the run that needs it).
    """
    return {
        "storage": DataRoot(settings.data_root),
        "kappa_source": dg.ResourceDefinition(
            resource_fn=lambda _: settings.kappa_source(),
            description=f"The {settings.source.name} kappa source, suite {settings.source.suite!r}",
        ),
        "tiling": settings.tiling,
        "hf_hub": settings.hub,
        "training": settings.training,
        "cluster": settings.cluster,
    }
