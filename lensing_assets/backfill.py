"""Submit a backfill of kappa maps and tiles from the command line, as the UI does.

``python -m lensing_assets.backfill`` asks the instance (``DAGSTER_HOME``) for an asset backfill
of ``kappa_maps`` and/or ``tiles``; the daemon (``dagster dev`` runs one) then runs it with the
assets' backfill policies, many partitions per run, kappa maps before the tiles cut from
them. (``dagster job backfill`` makes one run per partition: job backfills ignore backfill
policies.) Examples::

    python -m lensing_assets.backfill                      # kappa maps and tiles of every sim
    python -m lensing_assets.backfill --sims 1-64 --lmax 200,600
    python -m lensing_assets.backfill --select tiles --missing   # what is missing or failed

It prints the backfill's id; follow it in the UI (Overview > Backfills) or with
``dagster instance`` queries. Sims must be registered (``python -m lensing_assets.register``).
"""

import argparse
import sys
import time

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from lensing_assets.defs.automation import to_fill
from lensing_assets.defs.partitions import SIMS_PARTITIONS, sim_lmax_of
from lensing_core.config import PlatformSettings
from lensing_core.sims.catalog import parse_suite
from lensing_core.sky.tiles import LMAX_TO_NSIDE

ASSETS = ("kappa_maps", "tiles")


def backfill_partitions(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    select: list[str],
    sims: list[int] | None = None,
    lmaxes: list[int] | None = None,
    *,
    missing_only: bool = False,
) -> dict[str, list[str]]:
    """
    The partitions of each selected asset that a backfill should make.

    Parameters
    ----------
    instance, defs
        The instance (its registered sims and partition statuses) and the definitions.
    select
        Some of ``kappa_maps``, ``tiles``.
    sims, lmaxes
        Restrict to these sims (registered ones only) and tile lmax; ``None``: all.
    missing_only
        Only partitions never materialized or whose last run failed.

    Returns
    -------
        ``{asset name: partition keys}`` in the order of the partitions.
    """
    registered = instance.get_dynamic_partitions(SIMS_PARTITIONS)
    wanted_sims = set(registered) if sims is None else {str(s) for s in sims} & set(registered)
    wanted_lmax = set(LMAX_TO_NSIDE) if lmaxes is None else set(lmaxes)
    out: dict[str, list[str]] = {}
    for name in select:
        asset = defs.get_assets_def(name)
        partitions_def = asset.partitions_def
        assert partitions_def is not None
        keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if name == "kappa_maps":
            keys = [key for key in keys if key in wanted_sims]
        else:
            by_key = {key: sim_lmax_of(key) for key in keys}
            keys = [
                key
                for key, (sim, lmax) in by_key.items()
                if str(sim) in wanted_sims and lmax in wanted_lmax
            ]
        if missing_only:
            keys = to_fill(instance, asset, keys, partitions_def)
        out[name] = keys
    return out


def submit_backfill(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    partitions: dict[str, list[str]],
    *,
    title: str = "lensing backfill",
) -> str:
    """Add an asset backfill of *partitions* (``{asset: keys}``) to *instance*; its id."""
    asset_graph = defs.resolve_asset_graph()
    subset = AssetGraphSubset.from_asset_partition_set(
        {
            AssetKeyPartitionKey(dg.AssetKey(name), key)
            for name, keys in partitions.items()
            for key in keys
        },
        asset_graph,
    )
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=backfill_id,
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        asset_graph_subset=subset,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill_id


def main(argv: list[str] | None = None) -> int:
    """Submit the backfill the arguments describe; print its id and size."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--select", default=",".join(ASSETS), help="kappa_maps, tiles or both (default: both)"
    )
    parser.add_argument("--sims", help="ids and ranges such as 1-64,109 (default: every sim)")
    parser.add_argument("--lmax", help="tile lmax such as 200,600 (default: all five)")
    parser.add_argument(
        "--missing", action="store_true", help="only partitions missing or last failed"
    )
    args = parser.parse_args(argv)
    select = [name.strip() for name in args.select.split(",") if name.strip()]
    bad = [name for name in select if name not in ASSETS]
    if bad or not select:
        parser.error(f"--select takes {' or '.join(ASSETS)}, got {args.select!r}")
    try:
        sims = parse_suite(args.sims) if args.sims else None
        lmaxes = [int(v) for v in args.lmax.split(",")] if args.lmax else None
    except ValueError as err:
        parser.error(str(err))
    if lmaxes and set(lmaxes) - set(LMAX_TO_NSIDE):
        parser.error(f"--lmax takes values of {sorted(LMAX_TO_NSIDE)}, got {args.lmax!r}")
    from lensing_assets.definitions import build_defs

    defs = build_defs(PlatformSettings.from_env())
    instance = dg.DagsterInstance.get()
    partitions = backfill_partitions(
        instance, defs, select, sims, lmaxes, missing_only=args.missing
    )
    total = sum(len(keys) for keys in partitions.values())
    if total == 0:
        print("nothing to backfill: no registered sim matches, or nothing is missing")
        return 0
    backfill_id = submit_backfill(instance, defs, partitions)
    sizes = ", ".join(f"{len(keys)} {name}" for name, keys in partitions.items())
    print(f"backfill {backfill_id}: {sizes} partitions; the daemon runs it (dagster dev)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
