"""Fixtures of the compressor's tests: a toy tile table, its split and statistics."""

from __future__ import annotations

import pytest

from lensing_core.dataset.loader import TileTable
from lensing_core.dataset.normalization import NormStats, compute_norm_stats
from lensing_core.dataset.splits import Split, make_split
from tests.core.inference.test_compressor import TOY_SPLIT, toy_table


@pytest.fixture(scope="module")
def table() -> TileTable:
    return toy_table()


@pytest.fixture(scope="module")
def split(table: TileTable) -> Split:
    return make_split(table.sim_id, TOY_SPLIT)


@pytest.fixture(scope="module")
def stats(table: TileTable, split: Split) -> NormStats:
    return compute_norm_stats(table.tiles, table.theta, split.compressor_train)
