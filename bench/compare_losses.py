"""MSE against VMIM: train ``200|des_y3``'s compressor with each loss on the same shards.

Run after ``make demo`` (it reads the demo's shards), or with ``--build`` to make the maps,
tiles and ``200|des_y3`` shards of another suite first (the core steps without Dagster, into
``LENSING_DATA_ROOT``):

    . ./env.sh && LENSING_SUITE=demo python bench/compare_losses.py [--compressor-seeds 3] [LOSS]
    . ./env.sh && LENSING_SUITE=1-128 LENSING_FIDUCIAL_REALIZATIONS=4 LENSING_NSIDE=128 \
        LENSING_TRAINING_PRESET=cpu_demo LENSING_DATA_ROOT=/tmp/suite128/data \
        python bench/compare_losses.py --build

Each (loss, compressor seed) gets a data root of its own under
``$LENSING_DATA_ROOT/../losses/`` whose shards are hard links to the built ones (never
changed); there the ``cpu_demo`` compressor with that loss and seed (``42, 43, ...``), the
NPEs of ``LENSING_NPE_SEEDS`` seeds and the report are made exactly as the assets make them
(compressor seed 42 is the demo's). Prints one line per run: the FoM at sim 109's parameters
with its tile, realization and NPE-seed scatter, the FoM per fiducial point, the pulls, the
calibration verdict and coverage, the compressor's test R^2 and the time; then per loss the
median FoM over compressor seeds and their scatter, which is what a difference between the
losses must be judged against. Writes ``bench/out/compare_losses_<suite>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lensing_core.config import PlatformSettings
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.inference.config import COMPRESSOR_LOSSES
from lensing_core.inference.pipeline import fom_report, train_compressor, train_npe
from lensing_core.products import make_kappa, make_tiles
from lensing_core.storage import DataRoot

LMAX, NOISE = 200, "des_y3"


def _linked_root(built: DataRoot, name: str) -> DataRoot:
    root = DataRoot(built.root.parent / "losses" / name)
    shutil.rmtree(root.root, ignore_errors=True)
    shards = root.shards(LMAX, NOISE).dir
    shards.parent.mkdir(parents=True)
    shutil.copytree(built.shards(LMAX, NOISE).dir, shards, copy_function=os.link)
    return root


def _build(settings: PlatformSettings, root: DataRoot) -> None:
    """Maps, tiles and ``200|des_y3`` shards of the configured suite (what is missing)."""
    source = settings.kappa_source()
    start = time.perf_counter()
    for sim_id in source.catalog.sim_ids:
        if not root.kappa_path(sim_id).is_file():
            make_kappa(root, source, sim_id)
        if not root.tiles_path(sim_id, LMAX).is_file():
            make_tiles(root, sim_id, LMAX, settings.tiling)
    write_config_shards(root, source.catalog, LMAX, NOISE, source.catalog.sim_ids)
    n = len(source.catalog)
    print(f"built {n} sims ({source.suite_text()}) in {time.perf_counter() - start:.0f} s")


def _summary(record: dict[str, Any], seconds: float) -> dict[str, Any]:
    calib, fiducial = record["calibration"], record["fiducial"]
    return {
        "fom": record["fom_fiducial_median"],
        "scatter": record["fom_scatter"],
        "fom_seeds": record["fom_seeds"],
        "fom_prior": record["fom_prior"],
        "fom_points": record["fom_points"],
        "pulls": {p: v["pull"] for p, v in fiducial["points"].items()},
        "offsets": {p: v["offset"] for p, v in fiducial["points"].items()},
        "verdict": calib["verdict"],
        "coverage": [calib["coverage_68"], calib["coverage_95"]],
        "n_test": calib["n_test"],
        "r2_test": record["r2_test"],
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Train and report each loss and compressor seed; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("losses", nargs="*", help=f"among {COMPRESSOR_LOSSES} (default: all)")
    parser.add_argument("--compressor-seeds", type=int, default=1)
    parser.add_argument("--build", action="store_true", help="make the suite's shards first")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.losses) - set(COMPRESSOR_LOSSES))
    if unknown:
        parser.error(f"unknown losses {unknown}; choose among {COMPRESSOR_LOSSES}")
    settings = PlatformSettings.from_env()
    built = DataRoot(settings.data_root)
    if args.build:
        _build(settings, built)
    training = settings.training
    results: dict[str, Any] = {}
    for loss in args.losses or COMPRESSOR_LOSSES:
        runs = []
        for k in range(args.compressor_seeds):
            seed = training.compressor.seed + k
            root = _linked_root(built, f"{loss}_seed{seed}")
            start = time.perf_counter()
            cfg = dataclasses.replace(training.compressor, loss=loss, seed=seed)
            train_compressor(
                root, LMAX, NOISE, cfg, split=training.split, accelerator=training.accelerator
            )
            train_npe(root, LMAX, NOISE, training.npe, device=training.device())
            record = dict(fom_report(root, LMAX, NOISE, device=training.device()).record)
            run = {"compressor_seed": seed, **_summary(record, time.perf_counter() - start)}
            runs.append(run)
            sc = run["scatter"]
            print(
                f"{loss} seed {seed}: FoM {run['fom']:.1f} (tile {sc['tile']:.1f}, realization "
                f"{sc['realization'] or 0:.1f}, NPE seed {sc['seed'] or 0:.1f}; prior "
                f"{run['fom_prior']:.1f}); per point {_rounded(run['fom_points'])}; pulls "
                f"{_rounded(run['pulls'])}; calibration {run['verdict']} "
                f"{_rounded(run['coverage'])} on {run['n_test']} test tiles; R^2 "
                f"{_rounded(run['r2_test'])}; {run['seconds']} s",
                flush=True,
            )
        foms = [r["fom"] for r in runs]
        results[loss] = {
            "runs": runs,
            "fom_median": float(np.median(foms)),
            "fom_compressor_seed_std": float(np.std(foms, ddof=1)) if len(foms) > 1 else None,
        }
    for loss, r in results.items():
        std = r["fom_compressor_seed_std"]
        print(
            f"{loss}: median FoM {r['fom_median']:.1f} over {len(r['runs'])} compressor "
            f"seed(s)" + ("" if std is None else f", compressor-seed std {std:.1f}")
        )
    out = Path(__file__).parent / "out" / f"compare_losses_{settings.source.suite}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"suite": settings.source.suite, **results}, indent=2) + "\n")
    print(f"written to {out}")
    return 0


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
    sys.exit(main())
