"""The executor of every job: steps in the run's own process unless some can run side by side.

Dagster's default executor starts a subprocess per step, which loads the code location again:
about as long as a small step. A run whose steps can only run one after another (one asset,
or a chain) gains nothing from it, so it runs them in the run process; a run with steps that
can run at once (e.g. the study's field and power-spectrum branches) keeps the multiprocess
executor and its configuration (``max_concurrent``, retries, start method). Op-level pools
(the ``gpu`` pool) hold in both. The run configuration is that of Dagster's default executor:
``execution: {config: {multiprocess: {...}}}`` (the default, as above) or ``in_process: {}``
(every step in the run process).
"""

from collections.abc import Iterator, Mapping

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    ExecutorConfig,
    ExecutorRequirement,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor


def runs_serially(plan: ExecutionPlan) -> bool:
    """Whether no two steps of *plan* can run at the same time (one step per level)."""
    return all(len(level) <= 1 for level in plan.get_steps_to_execute_by_level())


class SerialInProcessExecutor(Executor):
    """In process when the plan is serial, otherwise the multiprocess executor it wraps."""

    def __init__(self, multiprocess: Executor) -> None:
        self._multiprocess = multiprocess
        self._in_process = InProcessExecutor(retries=multiprocess.retries)

    @property
    def retries(self) -> RetryMode:
        """The retry mode of the wrapped executor (both executors share it)."""
        return self._multiprocess.retries

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        """Execute *execution_plan* in process if it is serial, else in step processes."""
        chosen = self._in_process if runs_serially(execution_plan) else self._multiprocess
        yield from chosen.execute(plan_context, execution_plan)


def _requirements(config: ExecutorConfig) -> list[ExecutorRequirement]:
    return list(multiple_process_executor_requirements()) if "multiprocess" in config else []


@dg.executor(
    name="serial_in_process_or_multiprocess",
    config_schema=dg.Field(
        dg.Selector({"multiprocess": MULTI_PROC_CONFIG, "in_process": IN_PROC_CONFIG}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def lensing_executor(init_context: dg.InitExecutorContext) -> Executor:
    """Steps in the run process when they run one after another, else one process per step."""
    ((mode, config),) = init_context.executor_config.items()  # the selector's one choice
    assert isinstance(config, Mapping), config
    if mode == "in_process":
        return _core_in_process_executor_creation(config)
    return SerialInProcessExecutor(_core_multiprocess_executor_creation(config))
