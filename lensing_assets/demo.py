"""`make demo`: materialize the whole graph for the configured suite into the real instance.

Runs the graph in this process, one run after the other, recording each run in the instance
of ``DAGSTER_HOME`` so that ``dagster dev`` shows the results afterwards: kappa maps and tiles
in runs of many partitions each, as a backfill makes them (``LENSING_KAPPA_PER_RUN`` sims,
``LENSING_TILES_PER_RUN`` tile partitions, spread over the Dask cluster of the settings),
shards at the requested lmax values, the dataset revision, then compressor, NPE and FoM
report of the requested configurations (default ``200|des_y3``). A failed partition is
reported and the others go on. At the end it prints the fiducial FoM with its
scatter, the prior's FoM, the calibration and the compressor's test R^2, and checks that the
compressor learned (R^2 of S8 above 0.5, fiducial FoM at least twice the prior's): the exit
status is 1 if a partition failed or a check did not pass.
"""

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from lensing_assets.definitions import build_defs
from lensing_assets.defs.automation import RANGE_END, RANGE_START, key_ranges, tile_ranges
from lensing_assets.defs.partitions import (
    SIMS_PARTITIONS,
    config_of,
    dataset_partitions_def,
    register_sims,
    sim_lmax_of,
    sim_lmax_partitions_def,
    sim_partitions_def,
)
from lensing_core.config import PlatformSettings
from lensing_core.inference.fom import read_fom_result
from lensing_core.inference.study import STUDY_MD, NPEResult, collect_study
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.storage import DataRoot

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
MIN_R2_S8 = 0.5  # the compressor must really learn S8 ...
MIN_FOM_OVER_PRIOR = 2.0  # ... and the fiducial posterior be clearly tighter than the prior


def _say(text: str) -> None:
    print(text, flush=True)


def _shown(path: Path | str) -> str:
    """*path* relative to the working directory when it is under it (the README shows these)."""
    path = Path(path)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _run(
    defs: dg.Definitions,
    job_name: str,
    partition_key: str | None,
    instance: dg.DagsterInstance,
    last: str | None = None,
) -> bool:
    """One run of *job_name* for *partition_key*, or for the range up to *last*."""
    start = time.perf_counter()
    job = defs.resolve_job_def(job_name)
    if last is None or last == partition_key:
        result = job.execute_in_process(
            partition_key=partition_key, instance=instance, raise_on_error=False, run_config=QUIET
        )
    else:
        result = job.execute_in_process(
            tags={RANGE_START: str(partition_key), RANGE_END: last},
            instance=instance,
            raise_on_error=False,
            run_config=QUIET,
        )
    status = "ok" if result.success else "FAILED"
    key = partition_key if last in (None, partition_key) else f"{partition_key}...{last}"
    key = key or "-"
    _say(f"  {job_name:14s} {key:>12s}  {status}  {time.perf_counter() - start:6.1f} s")
    for failure in result.get_step_failure_events():
        error = failure.step_failure_data.error
        _say(f"    {error.message.strip() if error else 'failed (no error recorded)'}")
    return result.success


def _failed(
    instance: dg.DagsterInstance,
    asset: str,
    keys: Sequence[str],
    partitions_def: dg.PartitionsDefinition,
) -> list[str]:
    """The partitions among *keys* of *asset* that are not materialized."""
    status = instance.get_status_by_partition(dg.AssetKey(asset), keys, partitions_def) or {}
    return [key for key in keys if status.get(key) != dg.AssetPartitionStatus.MATERIALIZED]


def _report(root: DataRoot, key: str) -> bool:
    """Print the FoM report of configuration *key*; True if the learning checks pass."""
    lmax, noise = config_of(key)
    path = root.npe(lmax, noise).fom_result
    record = read_fom_result(path)
    calib, r2 = record["calibration"], record["r2_test"]
    ratio = record["fom_fiducial_median"] / record["fom_prior"]
    checks = {
        f"test R^2 of S8 > {MIN_R2_S8}": (r2.get("S8") or -math.inf) > MIN_R2_S8,
        f"fiducial FoM > {MIN_FOM_OVER_PRIOR:g} x prior FoM": ratio > MIN_FOM_OVER_PRIOR,
    }
    _say(f"FoM report {key}: {_shown(path)}")
    _say(f"  figure: {_shown(record['figure'])}")
    scatter, fiducial = record["fom_scatter"], record["fiducial"]
    n_tiles = len(record["fom_fiducial_all"])

    def std(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    _say(f"  compressor loss: {record.get('compressor_loss', 'mse')}")
    _say(
        f"  fiducial FoM (Omega_m, S8): {record['fom_fiducial_median']:.1f} at sim 109's "
        f"parameters, median over {fiducial['n_realizations']} realization(s) x 12 tiles "
        f"({n_tiles} tiles) and over {len(record['seeds'])} NPE seed(s)"
    )
    _say(
        f"    scatter: tile {std(scatter['tile'])}, realization {std(scatter['realization'])}, "
        f"seed {std(scatter['seed'])} (std of the FoM over tiles, realizations' medians, "
        "seeds' medians)"
    )
    for point in fiducial["points"].values():
        pulls = ", ".join(
            f"{name} {off:+.4f} +- {err:.4f} (pull {pull:+.1f}{', FLAGGED' if flag else ''})"
            for name, off, err, pull, flag in zip(
                point["params"],
                point["offset"],
                point["offset_err"],
                point["pull"],
                point["flagged"],
                strict=True,
            )
        )
        _say(f"  pulls at {point['title']} ({point['n_realizations']} realizations): {pulls}")
    _say(f"  projection offset: {fiducial['projection']['text']}")
    _say(f"  prior FoM: {record['fom_prior']:.1f} (fiducial / prior = {ratio:.1f})")
    _say(
        f"  test tiles: FoM {record['fom_test_median']:.1f} "
        f"[{record['fom_test_lo_16']:.1f}, {record['fom_test_hi_84']:.1f}] (16-84%)"
    )
    _say(
        f"  calibration on {calib['n_test']} test tiles: {calib['verdict']} "
        f"({calib['coverage_68']:.2f} inside the 68% ellipse, {calib['coverage_95']:.2f} inside "
        f"the 95% ellipse; verdict over every credible level); per seed: "
        + ", ".join(calib["seed_verdicts"])
    )
    _say(
        "  calibration at the fiducial points: "
        + ", ".join(f"{p} {rec['verdict']}" for p, rec in calib["fiducial"].items())
    )
    if record.get("calibration_figure"):
        _say(f"  calibration figure: {_shown(record['calibration_figure'])}")
    _say(
        "  compressor test R^2: "
        + ", ".join(f"{p} {'n/a' if v is None else f'{v:.3f}'}" for p, v in r2.items())
    )
    sims = record["n_sims"]
    _say(
        f"  split ({record['split_kind']}): sims per set "
        + ", ".join(f"{name} {n}" for name, n in sims.items())
    )
    for name, ok in checks.items():
        _say(f"  check {name}: {'pass' if ok else 'FAIL'}")
    return all(checks.values())


def _comparison(root: DataRoot, configs: list[tuple[int, str]]) -> None:
    """Print the study's comparison of *configs*: FoM of each summary, ratios, calibration."""

    def fom(result: NPEResult | None) -> str:
        if result is None:
            return "missing"
        seeds = "" if result.fom_seed_std is None else f" (seeds +- {result.fom_seed_std:.1f})"
        return (
            f"{result.fom:.1f} +- {result.fom_std:.1f}{seeds}, coverage {result.coverage_68:.2f}"
            f" / {result.coverage_95:.2f} at 68% / 95% ({result.n_test} test tiles): "
            f"{result.verdict}"
        )

    def ratio(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    _say(f"The study: {_shown(root.study_dir / STUDY_MD)} (and .json, .png)")
    for row in collect_study(root, configs).rows:
        fisher = row.fisher
        _say(
            f"  {row.lmax}|{row.noise_level}: FoM (Omega_m, S8), fiducial median +- tile std "
            "(seed std), calibration"
        )
        _say(f"    FoM_field  {fom(row.field)}")
        _say(f"    FoM_Cl     {fom(row.cl)}")
        _say(
            "    FoM_Fisher "
            + (
                "missing"
                if fisher is None
                else f"{fisher.fom:.1f} (others fixed: {fisher.fom_fixed:.1f}; box prior "
                f"{fisher.fom_prior:.1f})"
            )
        )
        _say(
            f"    FoM_field / FoM_Cl {ratio(row.field_over_cl)}, FoM_field / FoM_Fisher "
            f"{ratio(row.field_over_fisher)}, FoM_Cl / FoM_Fisher {ratio(row.cl_over_fisher)}"
        )
        for note in row.notes():
            _say(f"    note: {note}")


def _latest_metadata(
    instance: dg.DagsterInstance, asset: str, partition: str | None = None
) -> dict[str, Any]:
    """The metadata values of the latest materialization of *asset* (of *partition*)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    event = records[0].asset_materialization if records else None
    return {name: value.value for name, value in event.metadata.items()} if event else {}


def _print_example(instance: dg.DagsterInstance) -> None:
    """Show what the tiles of the fiducial sim look like, from the instance's metadata."""
    done = set(instance.get_materialized_partitions(dg.AssetKey("tiles")))
    key = next((k for k in ("109|600", "109|200") if k in done), None)
    if key is None:
        return
    meta = _latest_metadata(instance, "tiles", key)
    _say(f"tiles[{key}]: {_shown(meta['path'])}")
    for name in ("scheme", "sky_coverage", "max_pairwise_overlap"):
        _say(f"  {name}: {meta[name]}")
    for level, std in meta["std_per_bin"].items():
        _say(f"  std per bin, {level}: {std}")
    revision = _latest_metadata(instance, "hf_dataset")
    if revision:
        _say(f"hf_dataset revision {revision['revision_id']}: {revision['configs']}")
    _say("Browse the graph and its metadata: . ./env.sh && dagster dev")


def main(argv: list[str] | None = None) -> int:
    """Materialize the graph: data for the requested lmax values, models for the configs."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lmax", type=int, nargs="+", default=[200], help="tiles and shards at these lmax"
    )
    parser.add_argument("--sims", type=int, nargs="+", help="sims of the suite (default: all)")
    parser.add_argument(
        "--train",
        nargs="*",
        default=["200|des_y3"],
        metavar="LMAX|NOISE",
        help="configurations to train and report (none: data only)",
    )
    args = parser.parse_args(argv)
    known = set(dataset_partitions_def.get_partition_keys())
    unknown = [key for key in args.train if key not in known]
    if unknown:
        parser.error(f"--train: unknown configurations {unknown}; e.g. 200|des_y3")
    settings = PlatformSettings.from_env()
    defs = build_defs(settings)
    catalog = settings.kappa_source().catalog
    sims = [s for s in catalog.sim_ids if args.sims is None or s in set(args.sims)]
    if args.train:
        import lightning.pytorch  # noqa: F401 (its import sets its loggers to INFO)

        for name in ("lightning.pytorch", "lightning.fabric"):  # banners, not our results
            logging.getLogger(name).setLevel(logging.WARNING)
    instance = dg.DagsterInstance.get()
    _say(
        f"lensing demo: {settings.source.name} source, {len(sims)} sims "
        f"({sims[0]}..{sims[-1]}), nside {settings.source.nside}, lmax {args.lmax}\n"
        f"data root {_shown(settings.data_root)}, instance {_shown(instance.root_directory)}"
    )
    start = time.perf_counter()
    register_sims(instance, sims)
    order = instance.get_dynamic_partitions(SIMS_PARTITIONS)
    kappa_keys = [str(s) for s in sims]
    for first, last in key_ranges(kappa_keys, order, settings.automation.kappa_per_run):
        _run(defs, "kappa_job", first, instance, last)
    failed = _failed(instance, "kappa_maps", kappa_keys, sim_partitions_def)
    all_tiles = sim_lmax_partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    tile_keys = [
        str(key)
        for key, (sim, lmax) in ((key, sim_lmax_of(key)) for key in all_tiles)
        if sim in sims and lmax in args.lmax and str(sim) not in failed
    ]
    for first, last in tile_ranges(tile_keys, order, settings.automation.tiles_per_run):
        _run(defs, "tiles_job", first, instance, last)
    failed += _failed(instance, "tiles", tile_keys, sim_lmax_partitions_def)
    for lmax in args.lmax:
        for noise in NOISE_LEVELS:
            if not _run(defs, "shards_job", f"{lmax}|{noise}", instance):
                failed.append(f"shards {lmax}|{noise}")
    if not _run(defs, "hf_dataset_job", None, instance):
        failed.append("hf_dataset")
    trained = []
    for key in args.train:
        jobs = ("compressor_job", "npe_job", "fom_report_job")
        if all(_run(defs, job, key, instance) for job in jobs):
            trained.append(key)
        else:
            failed.append(f"models {key}")
        for job in ("band_powers_job", "cl_report_job", "fisher_job"):  # the study's baselines
            if not _run(defs, job, key, instance):
                failed.append(f"{job} {key}")
    if args.train and not _run(defs, "study_job", None, instance):
        failed.append("study_report")
    root = DataRoot(settings.data_root)
    _say(
        f"done in {time.perf_counter() - start:.0f} s; tiles under {_shown(root.root / 'tiles')}, "
        f"dataset revision in {_shown(root.hf_dataset.dir)}"
        + (f"; FAILED: {failed}" if failed else "")
    )
    _print_example(instance)
    learned = [_report(root, key) for key in trained]
    if args.train:
        _comparison(root, [config_of(key) for key in args.train])
    return 1 if failed or not all(learned) else 0


if __name__ == "__main__":
    sys.exit(main())
