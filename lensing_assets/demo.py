"""`make demo`: materialize the main graph for the configured suite into the real instance.

Runs every partition in this process, one after the other, recording each run in the
instance of ``DAGSTER_HOME`` so that ``dagster dev`` shows the results afterwards. A failed
partition is reported and the others go on.
"""

import argparse
import sys
import time

import dagster as dg

from lensing_assets.definitions import defs
from lensing_assets.defs.partitions import CATALOG, SETTINGS, sim_lmax_partitions_def
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _say(text: str) -> None:
    print(text, flush=True)


def _run(job_name: str, partition_key: str | None, instance: dg.DagsterInstance) -> bool:
    start = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        partition_key=partition_key, instance=instance, raise_on_error=False, run_config=QUIET
    )
    status = "ok" if result.success else "FAILED"
    key = partition_key or "-"
    _say(f"  {job_name:14s} {key:>12s}  {status}  {time.perf_counter() - start:6.1f} s")
    for failure in result.get_step_failure_events():
        _say(f"    {failure.step_failure_data.error.message.strip()}")
    return result.success


def _print_example(instance: dg.DagsterInstance) -> None:
    """Show what the tiles of the fiducial sim look like, from the instance's metadata."""
    done = set(instance.get_materialized_partitions(dg.AssetKey("tiles")))
    key = next((k for k in ("109|600", "109|200") if k in done), None)
    if key is None:
        return
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("tiles"), asset_partitions=[key]), limit=1
    ).records
    meta = records[0].asset_materialization.metadata
    _say(f"tiles[{key}]: {meta['path'].value}")
    for name in ("scheme", "sky_coverage", "max_pairwise_overlap"):
        _say(f"  {name}: {meta[name].value}")
    for level, std in meta["std_per_bin"].value.items():
        _say(f"  std per bin, {level}: {std}")
    records = instance.fetch_materializations(dg.AssetKey("hf_dataset"), limit=1).records
    if records:
        revision = records[0].asset_materialization.metadata
        _say(f"hf_dataset revision {revision['revision_id'].value}: {revision['configs'].value}")
    _say("Browse the graph and its metadata: . ./env.sh && dagster dev")


def main(argv: list[str] | None = None) -> int:
    """Materialize kappa maps, then tiles at the requested lmax values, for every sim."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lmax", type=int, nargs="+", default=list(LMAX_TO_NSIDE))
    parser.add_argument("--sims", type=int, nargs="+", default=CATALOG.sim_ids)
    args = parser.parse_args(argv)
    sims = [s for s in CATALOG.sim_ids if s in set(args.sims)]
    instance = dg.DagsterInstance.get()
    _say(
        f"lensing demo: {SETTINGS.source} source, {len(sims)} sims "
        f"({sims[0]}..{sims[-1]}), nside {SETTINGS.nside}, "
        f"lmax {args.lmax}\ndata root {SETTINGS.data_root}, instance {instance.root_directory}"
    )
    start = time.perf_counter()
    failed = [str(s) for s in sims if not _run("kappa_job", str(s), instance)]
    for key in sim_lmax_partitions_def.get_partition_keys():
        sim, lmax = key.split("|")
        wanted = int(sim) in sims and int(lmax) in args.lmax and sim not in failed
        if wanted and not _run("tiles_job", key, instance):
            failed.append(key)
    for lmax in args.lmax:
        for noise in NOISE_LEVELS:
            if not _run("shards_job", f"{lmax}|{noise}", instance):
                failed.append(f"shards {lmax}|{noise}")
    if not _run("hf_dataset_job", None, instance):
        failed.append("hf_dataset")
    _say(
        f"done in {time.perf_counter() - start:.0f} s; tiles under {SETTINGS.data_root / 'tiles'}, "
        f"dataset revision in {SETTINGS.data_root / 'hf_dataset'}"
        + (f"; FAILED: {failed}" if failed else "")
    )
    _print_example(instance)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
