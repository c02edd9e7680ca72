"""The executor: a serial plan runs in the run process; steps that can overlap get processes."""

from __future__ import annotations

import dagster as dg
from dagster._core.execution.api import create_execution_plan

from lensing_assets.defs.batch import DATA_POOL
from lensing_assets.defs.executor import lensing_executor, runs_serially


@dg.asset
def first() -> int:
    return 1


@dg.asset
def second(first: int) -> int:
    return first + 1


@dg.asset
def beside(first: int) -> int:
    return first + 2


def _plan(*assets: dg.AssetsDefinition) -> object:
    defs = dg.Definitions(assets=list(assets), executor=lensing_executor)
    return create_execution_plan(defs.resolve_implicit_global_asset_job_def())


def test_a_chain_is_serial_and_branches_are_not() -> None:
    assert runs_serially(_plan(first))  # type: ignore[arg-type]
    assert runs_serially(_plan(first, second))  # type: ignore[arg-type]
    assert not runs_serially(_plan(first, second, beside))  # type: ignore[arg-type]


def test_the_platform_jobs_use_it(test_defs: dg.Definitions) -> None:
    """Every job of the definitions, the implicit asset job included, has this executor."""
    jobs = [test_defs.resolve_implicit_global_asset_job_def(), *test_defs.resolve_all_job_defs()]
    assert {job.executor_def.name for job in jobs} == {lensing_executor.name}


def test_batches_run_in_the_data_pool(test_defs: dg.Definitions) -> None:
    """Kappa and tiles steps share the ``data`` pool: one batch at a time by default."""
    for name in ("kappa_maps", "tiles"):
        assert test_defs.get_assets_def(name).op.pool == DATA_POOL
