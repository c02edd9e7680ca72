"""Run configs derived from the core config dataclasses, so the two never drift apart.

A field added to :class:`~lensing_core.inference.config.CompressorConfig` (or to any config
dataclass passed here) appears in the Launchpad with no edit in ``lensing_assets``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import dagster as dg
import pydantic

T = TypeVar("T")


def run_config_class(
    name: str, base: Any, extra: Mapping[str, tuple[Any, Any]] | None = None
) -> type[dg.Config]:
    """
    A Dagster run config with a field for every field of the dataclass instance *base*.

    Parameters
    ----------
    name
        Name of the class (shown in the Launchpad).
    base
        A config dataclass instance: its fields and types become the run config's, and its
        values the defaults (so a run changes only what it sets).
    extra
        More fields, ``{name: (type, default)}``, for settings of a run that are not part of
        the config (e.g. ``max_steps``).
    """
    hints = typing.get_type_hints(type(base))
    fields: dict[str, Any] = {
        f.name: (hints[f.name], getattr(base, f.name)) for f in dataclasses.fields(base)
    }
    fields.update(extra or {})
    doc = (
        f"Run settings of {type(base).__name__}; a field left out keeps the value of the "
        "deployment's settings."
    )
    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, **fields)


def to_core(config: dg.Config, base: T) -> T:
    """*base* with every field of the dataclass taken from the run *config*."""
    names = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
    return dataclasses.replace(base, **{name: getattr(config, name) for name in names})  # type: ignore[type-var]
