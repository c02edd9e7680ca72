"""`make demo`: materialize the main graph for the configured suite into the real instance.

Runs every partition in this process, one after the other, recording each run in the
instance of ``DAGSTER_HOME`` so that ``dagster dev`` shows the results afterwards. A failed
partition is reported and the others go on.
"""

import argparse
import logging
import sys
import time

import dagster as dg

from lensing_assets.definitions import defs
from lensing_assets.defs.partitions import CATALOG, SETTINGS, sim_lmax_partitions_def
from lensing_core.sky.tiles import LMAX_TO_NSIDE

logger = logging.getLogger("lensing_assets.demo")


def _run(job_name: str, partition_key: str, instance: dg.DagsterInstance) -> bool:
    start = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        partition_key=partition_key, instance=instance, raise_on_error=False
    )
    status = "ok" if result.success else "FAILED"
    print(
        f"  {job_name:10s} {partition_key:>10s}  {status}  {time.perf_counter() - start:6.1f} s",
        flush=True,
    )
    return result.success


def main(argv: list[str] | None = None) -> int:
    """Materialize kappa maps, then tiles at the requested lmax values, for every sim."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--lmax", type=int, nargs="*", default=list(LMAX_TO_NSIDE), help="lmax values"
    )
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    print(
        f"lensing demo: {SETTINGS.source} source, {len(CATALOG)} sims "
        f"({CATALOG.sim_ids[0]}..{CATALOG.sim_ids[-1]}), nside {SETTINGS.nside}, lmax {args.lmax}\n"
        f"data root {SETTINGS.data_root}, instance {instance.root_directory}",
        flush=True,
    )
    start = time.perf_counter()
    failed = []
    for sim_id in CATALOG.sim_ids:
        if not _run("kappa_job", str(sim_id), instance):
            failed.append(str(sim_id))
    for key in sim_lmax_partitions_def.get_partition_keys():
        sim, lmax = key.split("|")
        if int(lmax) in args.lmax and sim not in failed and not _run("tiles_job", key, instance):
            failed.append(key)
    print(
        f"done in {time.perf_counter() - start:.0f} s; tiles under {SETTINGS.data_root / 'tiles'}"
        + (f"; FAILED: {failed}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
