"""Kappa-map sources: where the 4 tomographic convergence maps of a simulation come from.

Every source returns the same thing per sim: maps of shape ``(4, npix)``, RING ordering, one
nside, and a provenance record. Each source is a :class:`KappaSource` in a module of its own;
:data:`SOURCES` maps the names ``LENSING_SOURCE`` takes to the classes. A new source is one
module with one class, and one :func:`register_source` call (or an entry below).
"""

from __future__ import annotations

from lensing_core.sims.sources.base import KappaSource, SourceSettings, select_suite
from lensing_core.sims.sources.gower_street import GowerStreetSource
from lensing_core.sims.sources.kappa_npz import KappaNpzSource
from lensing_core.sims.sources.synthetic import SyntheticSource

#: The sources by name, in the order the settings list them.
SOURCES: dict[str, type[KappaSource]] = {
    cls.name: cls for cls in (SyntheticSource, KappaNpzSource, GowerStreetSource)
}


def register_source(cls: type[KappaSource]) -> type[KappaSource]:
    """Make *cls* available as ``LENSING_SOURCE={cls.name}``; returns *cls* (a decorator)."""
    SOURCES[cls.name] = cls
    return cls


def source_class(name: str) -> type[KappaSource]:
    """
    The source registered as *name*.

    Raises
    ------
    ValueError
        No source has that name (the message lists them).
    """
    try:
        return SOURCES[name]
    except KeyError:
        msg = f"LENSING_SOURCE={name!r} is not one of {tuple(SOURCES)}"
        raise ValueError(msg) from None


__all__ = [
    "SOURCES",
    "GowerStreetSource",
    "KappaNpzSource",
    "KappaSource",
    "SourceSettings",
    "SyntheticSource",
    "register_source",
    "select_suite",
    "source_class",
]
