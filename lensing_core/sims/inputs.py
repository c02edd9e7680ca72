"""What a simulation's inputs are, which sims a source holds, and a version of each sim's inputs.

The automation rebuilds a sim's products when the *version of its inputs* changes:

``synthetic``
    The generation recipe (its code version, nside, band limit, seed) and the sim's
    parameters: nothing is read from disk.
``kappa_npz``
    The content (SHA-256) of ``sim{ID:05d}/kappa_maps.npz`` and the sim's parameters.
``gower_street``
    The content of ``control.par``, ``z_values.txt`` and every ``*.lightcone.npy`` shell of
    ``sim{ID:05d}/``, and the sim's parameters (a changed row of the parameter table counts).

Content hashes of large files are cached by ``(path, size, mtime_ns)`` in a JSON file (see
:class:`lensing_core.io.FileHashCache`), so a periodic observation re-reads only files that
changed.

Functions
---------
input_files
    The files a sim's inputs consist of (empty for ``synthetic``).
input_version
    The version string of one sim's inputs.
discover_sim_ids
    The sims the configured source holds now (new directories, new table rows).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lensing_core.io import FileHashCache
from lensing_core.sims.sources import GowerStreetSource, KappaNpzSource, KappaSource

if TYPE_CHECKING:
    from lensing_core.config import PlatformSettings

logger = logging.getLogger(__name__)

#: Bump when the meaning of an input version changes (every sim then counts as changed).
INPUT_VERSION_FORMAT = "lensing-inputs/1"


def input_files(source: KappaSource, sim_id: int) -> list[Path]:
    """
    The files whose content makes up the inputs of *sim_id* (sorted; empty for synthetic).

    Raises
    ------
    FileNotFoundError
        A ``kappa_npz`` file or a Gower Street directory of the sim does not exist (the
        message names it).
    """
    if isinstance(source, KappaNpzSource):
        path = source.path(sim_id)
        if not path.is_file():
            msg = f"input of sim {sim_id} is missing: {path} does not exist"
            raise FileNotFoundError(msg)
        return [path]
    if isinstance(source, GowerStreetSource):
        sim_dir = source.sim_dir(sim_id)
        if not sim_dir.is_dir():
            msg = f"simulation directory of sim {sim_id} is missing: {sim_dir} does not exist"
            raise FileNotFoundError(msg)
        named = [sim_dir / n for n in ("control.par", "z_values.txt") if (sim_dir / n).is_file()]
        return sorted(named + list(sim_dir.glob("*.lightcone.npy")))
    return []


def _params_record(params: Mapping[str, float]) -> dict[str, float | None]:
    # NaN (kappa_npz without a table) is not JSON: record it as null
    return {k: (None if math.isnan(v) else float(v)) for k, v in sorted(params.items())}


def input_version(source: KappaSource, sim_id: int, *, cache: FileHashCache | None = None) -> str:
    """
    Version of the inputs of *sim_id*: equal exactly when the inputs are the same.

    Parameters
    ----------
    source
        The configured source (its catalog gives the sim's parameters).
    sim_id
        The sim.
    cache
        Content-hash cache; a fresh in-memory one if not given.

    Returns
    -------
        A 24-character hex digest of :data:`INPUT_VERSION_FORMAT`, the source's settings
        (:meth:`describe`, without the catalog's name), the sim's parameters, and the name,
        size and SHA-256 of each input file.

    Raises
    ------
    KeyError
        *sim_id* is not in the source's catalog.
    FileNotFoundError
        An input of the sim is missing.
    """
    cache = cache or FileHashCache()
    settings = {k: v for k, v in source.describe().items() if k != "catalog"}
    files = input_files(source, sim_id)
    record = {
        "format": INPUT_VERSION_FORMAT,
        "source": settings,
        "sim_id": int(sim_id),
        "params": _params_record(source.catalog[sim_id]),
        "files": [[p.name, p.stat().st_size, cache.sha256(p)] for p in files],
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def discover_sim_ids(settings: PlatformSettings) -> list[int]:
    """
    The sims the configured source holds now, within the configured suite.

    ``synthetic``: the catalog's sims (the parameter table's rows when one is configured).
    ``kappa_npz``: the ``sim?????/kappa_maps.npz`` files present. ``gower_street``: the
    ``sim?????/`` directories present that have a row in the parameter table (a directory
    without one is logged and left out: its parameters are unknown).

    Parameters
    ----------
    settings
        The platform settings (source, suite, directories, table).

    Returns
    -------
        Sorted sim ids.
    """
    catalog = settings.catalog()
    if settings.source != "gower_street":
        return sorted(catalog.sim_ids)
    assert settings.sims_dir is not None  # checked by PlatformSettings
    present = []
    for sim_dir in sorted(settings.sims_dir.glob("sim*")):
        suffix = sim_dir.name.removeprefix("sim")
        if not (suffix.isdigit() and sim_dir.is_dir()):
            continue
        if int(suffix) in catalog:
            present.append(int(suffix))
        elif settings.suite.strip().lower() == "full":
            logger.warning("%s has no row in %s: left out", sim_dir, settings.catalog_csv)
    return sorted(present)
