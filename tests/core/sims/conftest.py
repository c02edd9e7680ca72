"""Fixtures for the simulation tests, taken from :mod:`tests.fixtures.maps`.

Once ``tests/conftest.py`` registers ``pytest_plugins = ["tests.fixtures.maps"]``
this file can go.
"""

from __future__ import annotations

from tests.fixtures.maps import fiducial_params, rng

__all__ = ["fiducial_params", "rng"]
