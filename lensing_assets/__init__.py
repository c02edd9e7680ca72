"""Dagster definitions of the lensing platform; the science lives in ``lensing_core``."""

from lensing_assets.definitions import defs

__all__ = ["defs"]
