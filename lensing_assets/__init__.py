"""Dagster definitions of the lensing platform; the science lives in ``lensing_core``."""

from lensing_assets.definitions import build_defs, defs

__all__ = ["build_defs", "defs"]
