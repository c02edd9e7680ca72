"""Many partitions per run, each partition's truth on its own.

A backfill (UI, CLI, automation, schedules) of ``kappa_maps`` or ``tiles`` hands a run a range
of partitions (the assets' backfill policy). The run computes them as one batch
(:func:`lensing_core.batch.run_batch`), in this process or on the Dask cluster of the
settings, and records each partition apart:

- all succeeded: one materialization per partition with that partition's own metadata;
- some failed: a materialization for each success, then the run fails naming every failed
  partition and why. Dagster then counts exactly the failed partitions as failed (a ranged
  run's failed partitions are its range minus what it materialized), so re-running the
  backfill, or the fill-missing schedule, retries only those.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lensing_assets.defs.metadata import dagster_metadata
from lensing_core.batch import BatchOutcome, Call, run_batch
from lensing_core.cluster import ClusterError, ClusterSettings, describe, open_client
from lensing_core.config import AutomationSettings
from lensing_core.io import InputMissingError

#: The pool of the kappa and tiles steps. A batch takes every core of this machine through its
#: local Dask cluster, so the pool's default limit of 1 (``dagster.yaml``) runs one batch at a
#: time; raise it (``dagster instance concurrency set data N``) when the batches run on SLURM
#: or an external scheduler.
DATA_POOL = "data"

#: Partitions per run of ``kappa_maps`` and ``tiles`` unless the settings say otherwise
#: (``LENSING_KAPPA_PER_RUN``, ``LENSING_TILES_PER_RUN``; :func:`batch_policies`).
KAPPA_BATCH = AutomationSettings().kappa_per_run
TILES_BATCH = AutomationSettings().tiles_per_run


def compute_batch(
    context: dg.AssetExecutionContext, calls: Mapping[Any, Call[Any]], cluster: ClusterSettings
) -> BatchOutcome[Any, Any]:
    """
    Run *calls* here if there is one, else on the Dask cluster of *cluster*.

    A single unit gains nothing from a cluster, so it runs in the run's process; several are
    spread over the cluster's workers, whose dashboard address goes to the run's logs.

    Raises
    ------
    dagster.Failure
        The cluster cannot be reached or started (the message names its address, or the
        SLURM jobs and their logs); no unit ran.
    """
    if len(calls) <= 1:
        return run_batch(calls)
    try:
        with open_client(cluster) as client:
            where = describe(client)
            context.log.info(f"{len(calls)} units on the Dask {where}")
            return run_batch(calls, client, where=where)
    except ClusterError as err:  # no partition was made: the run fails with the reason
        raise dg.Failure(description=str(err)) from None


def record_batch(
    context: dg.AssetExecutionContext,
    outcomes: Mapping[str, Mapping[str, Any] | Exception],
    *,
    code_version: str,
) -> dg.MaterializeResult:
    """
    The materialization of a batch: per-partition metadata, or the failure of some partitions.

    Parameters
    ----------
    context
        The run's context; its ``partition_keys`` are the keys of *outcomes*.
    outcomes
        ``{partition_key: metadata of the written product, or the exception}``.
    code_version
        The asset's code version, recorded on the materializations of a partly failed batch.

    Raises
    ------
    Exception
        The partition's own exception when the run has one partition (as a run of one
        partition always did); otherwise ``dagster.Failure`` listing every failed partition
        with its message, after the successes were recorded.
    """
    failed = {key: err for key, err in outcomes.items() if isinstance(err, Exception)}
    done = {key: meta for key, meta in outcomes.items() if not isinstance(meta, Exception)}
    if not failed:
        for key, meta in done.items():
            context.add_asset_metadata(dagster_metadata(meta), partition_key=key)
        return dg.MaterializeResult()
    asset_key = context.asset_key
    partitions_def = context.assets_def.partitions_def
    for key, meta in done.items():
        tags = {"dagster/code_version": code_version}
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            dims = partitions_def.get_partition_key_from_str(key).keys_by_dimension
            tags |= {f"dagster/partition/{dim}": value for dim, value in dims.items()}
        context.log_event(
            dg.AssetMaterialization(
                asset_key=asset_key, partition=key, metadata=dagster_metadata(meta), tags=tags
            )
        )
    if len(outcomes) == 1:
        (err,) = failed.values()
        if isinstance(err, InputMissingError):  # upstream missing: a retry cannot help
            raise dg.Failure(description=str(err), allow_retries=False) from None
        raise err
    lines = "\n".join(f"- {key}: {err}" for key, err in sorted(failed.items()))
    raise dg.Failure(
        description=f"{len(failed)} of {len(outcomes)} partitions failed "
        f"({len(done)} materialized):\n{lines}",
        metadata={"failed_partitions": sorted(failed), "materialized": sorted(done)},
        allow_retries=not all(isinstance(e, InputMissingError) for e in failed.values()),
    )


def with_batch_policy(asset: dg.AssetsDefinition, per_run: int) -> dg.AssetsDefinition:
    """*asset* with a backfill policy of *per_run* partitions per run."""
    if asset.backfill_policy == dg.BackfillPolicy.multi_run(per_run):
        return asset
    return asset.with_attributes(backfill_policy=dg.BackfillPolicy.multi_run(per_run))
