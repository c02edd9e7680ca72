"""Many partitions' work in one run: each partition's outcome on its own, serially or on Dask.

A batch is a mapping from partition keys to calls of the per-partition functions of
:mod:`lensing_core.products`. Every call's outcome is kept apart: its result, or the exception
that stopped it, so one bad sim never stops the others. With a ``distributed`` client the
calls are spread over the cluster's workers; a worker that dies mid-call has its calls
retried on another worker by the scheduler (``distributed.scheduler.allowed-failures``), and
a call that kills every worker it lands on ends as that partition's failure
(``distributed.KilledWorker``). The products write atomically, so a killed call leaves no
file behind.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lensing_core.products import DEFAULT_TILING, check_kappa, make_kappa, make_tiles_batch
from lensing_core.sims.sources import KappaSource
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot
from lensing_core.validation import CHECK_NAMES

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


@dataclass(frozen=True)
class Call(Generic[R]):
    """A function and its arguments: one unit of a batch (picklable for Dask)."""

    fn: Callable[..., R]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class BatchOutcome(Generic[K, R]):
    """
    What a batch did.

    Attributes
    ----------
    outcomes
        ``{key: result or exception}`` for every key of the batch.
    seconds
        Wall time of the batch (s).
    where
        ``"in process"``, or a description of the Dask cluster.
    """

    outcomes: Mapping[K, R | Exception]
    seconds: float
    where: str

    @property
    def failed(self) -> dict[K, Exception]:
        """The keys whose call raised, with the exception."""
        return {k: v for k, v in self.outcomes.items() if isinstance(v, Exception)}


def run_batch(
    calls: Mapping[K, Call[R]], client: Client | None = None, *, where: str = ""
) -> BatchOutcome[K, R]:
    """
    Run every call of *calls*, keeping each one's result or exception.

    Parameters
    ----------
    calls
        ``{key: Call}``; keys are the batch's units (a sim, or a sim with several lmax).
    client
        A ``distributed.Client``: the calls run on its workers, as many at once as they have
        threads. ``None``: one after the other in this process.
    where
        How to describe *client* in the outcome (e.g. its dashboard address).

    Returns
    -------
        The outcome of every key; an exception of one call never stops the others.
    """
    start = time.perf_counter()
    outcomes: dict[K, R | Exception] = {}
    if client is None:
        for key, call in calls.items():
            try:
                outcomes[key] = call.fn(*call.args)
            except Exception as err:  # kept as that key's outcome
                logger.warning("batch: %s failed: %s", key, err)
                outcomes[key] = err
        return BatchOutcome(outcomes, time.perf_counter() - start, "in process")

    from distributed import as_completed

    tag = uuid.uuid4().hex[:8]
    futures = {
        client.submit(call.fn, *call.args, key=f"{_name(call.fn)}-{key}-{tag}", pure=False): key
        for key, call in calls.items()
    }
    for future in as_completed(futures):
        key = futures[future]
        try:
            outcomes[key] = future.result()
        except Exception as err:  # the call's own error, or KilledWorker
            logger.warning("batch: %s failed: %s", key, err)
            outcomes[key] = err
    return BatchOutcome(outcomes, time.perf_counter() - start, where or "dask")


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "call")


def _on_worker(options: TilingOptions) -> TilingOptions:
    """*options* with the transforms' threads set to the Dask worker's threads, if on one."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):  # not on a worker: as given
        return options
    return dataclasses.replace(options, nthreads=threads)


def kappa_call(
    root: DataRoot, source: KappaSource, sim_id: int, options: TilingOptions = DEFAULT_TILING
) -> dict[str, Any]:
    """
    One sim's kappa maps and their checks, made where the call runs: a kappa batch's unit.

    :func:`~lensing_core.products.make_kappa` (with the Dask worker's threads when on one),
    then :func:`kappa_checks_call`.

    Returns
    -------
        ``{"metadata": the result's to_metadata(), "checks": ...}`` (drawn where the work
        ran, so only the small records travel back).
    """
    metadata = make_kappa(root, source, sim_id, _on_worker(options)).to_metadata()
    try:
        checks = kappa_checks_call(root, source, sim_id, options)
    except Exception as err:  # the maps are made; that the checks could not run is their result
        error = f"the checks could not run on sim {sim_id}: {err}"
        failed = {"passed": False, "summary": error, "metadata": {"error": str(err)}}
        checks = {"checks": dict.fromkeys(CHECK_NAMES, failed)}
    return {"metadata": metadata, **checks}


def kappa_checks_call(
    root: DataRoot, source: KappaSource, sim_id: int, options: TilingOptions = DEFAULT_TILING
) -> dict[str, Any]:
    """
    The checks of one sim's stored kappa maps (:func:`~lensing_core.products.check_kappa`).

    Returns
    -------
        ``{"checks": {name: {"passed", "summary", "metadata"}}}``.

    Raises
    ------
    lensing_core.io.InputMissingError, ValueError
        The kappa file is missing or unreadable (the message names it).
    """
    del options  # the checks use no transform threads; kept for a batch's uniform calls
    checks = check_kappa(root, source, sim_id)
    return {
        "checks": {
            name: {
                "passed": outcome.passed,
                "summary": outcome.summary,
                "metadata": checks.to_metadata(name),
            }
            for name, outcome in checks.validation.outcomes.items()
        }
    }


def tiles_call(
    root: DataRoot,
    sim_id: int,
    lmaxes: Iterable[int],
    options: TilingOptions = DEFAULT_TILING,
    missing_hint: str = "",
) -> dict[int, dict[str, Any] | Exception]:
    """
    One sim's tiles at several lmax (one rotation per orientation): the unit of a tiles batch.

    :func:`~lensing_core.products.make_tiles_batch` with the worker's threads; returns
    ``{lmax: to_metadata() or the exception of that lmax}``.
    """
    outcomes = make_tiles_batch(
        root, sim_id, list(lmaxes), _on_worker(options), missing_hint=missing_hint
    )
    return {
        lmax: out if isinstance(out, Exception) else out.to_metadata()
        for lmax, out in outcomes.items()
    }
