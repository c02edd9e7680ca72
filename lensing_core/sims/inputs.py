"""The version of a simulation's inputs: equal exactly when the inputs are the same.

The automation rebuilds a sim's products when the version of its inputs changes. The version
hashes the source's settings, the sim's parameters (a changed row of the parameter table
counts) and the content of the files the source names for the sim
(:meth:`~lensing_core.sims.sources.KappaSource.input_files`: none for the synthetic source,
whose recipe is in its settings). Content hashes of large files are cached by
``(path, size, mtime_ns)`` (:class:`lensing_core.io.FileHashCache`), so a periodic observation
re-reads only files that changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lensing_core.io import FileHashCache

if TYPE_CHECKING:
    from lensing_core.sims.sources import KappaSource

#: Bump when the meaning of an input version changes (every sim then counts as changed).
INPUT_VERSION_FORMAT = "lensing-inputs/1"


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
    files = source.input_files(sim_id)
    record = {
        "format": INPUT_VERSION_FORMAT,
        "source": settings,
        "sim_id": int(sim_id),
        "params": _params_record(source.catalog[sim_id]),
        "files": [[p.name, p.stat().st_size, cache.sha256(p)] for p in files],
    }
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]
