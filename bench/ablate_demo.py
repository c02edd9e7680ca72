"""What each choice of issue 12 does to the demo's FoM: retrain ``200|des_y3`` with one reverted.

Run after ``make demo`` (it reads that demo's tile files and shards, never changes them):

    . ./env.sh && LENSING_SUITE=demo python bench/ablate_demo.py [VARIANT ...]

Each variant gets a data root of its own under ``$LENSING_DATA_ROOT/../ablations/`` (the
shards are hard links to the demo's, or new shards of realisation 0 only), trains the
``cpu_demo`` compressor and the NPE with the demo's seeds, and prints the report's figures:

``tile_split``        the earlier tile-level 70/25/5 split instead of the split by simulation
``square``            the 8 symmetries of the square instead of the 4 of a face
``one_realization``   one noise map per (sim, noise level) instead of 4 drawn per epoch

The lognormal shift changes the maps themselves: compare ``make demo`` with
``LENSING_SYNTHETIC_SHIFT=hilbert2011`` (and every old option at once) instead.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time

from lensing_core.config import PlatformSettings
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import SplitSpec
from lensing_core.inference.pipeline import fom_report, train_compressor, train_npe
from lensing_core.sims.catalog import SimCatalog
from lensing_core.storage import DataRoot

LMAX, NOISE = 200, "des_y3"
VARIANTS = ("tile_split", "square", "one_realization")


def _root_for(demo: DataRoot, name: str, catalog: SimCatalog) -> DataRoot:
    root = DataRoot(demo.root.parent / "ablations" / name)
    shutil.rmtree(root.root, ignore_errors=True)
    shards = root.shards(LMAX, NOISE).dir
    shards.parent.mkdir(parents=True)
    if name != "one_realization":
        shutil.copytree(demo.shards(LMAX, NOISE).dir, shards, copy_function=os.link)
        return root
    # tile files of realisation 0 only, then their shards
    for path in sorted((demo.root / "tiles" / f"lmax{LMAX}").glob("sim*.npz")):
        sim_id = int(path.stem.removeprefix("sim"))
        by_noise, meta = demo.read_tiles(sim_id, LMAX, (NOISE,))
        root.write_tiles(sim_id, LMAX, by_noise, meta)
    write_config_shards(root, catalog, LMAX, NOISE, catalog.sim_ids)
    return root


def main(names: list[str]) -> None:
    """Train and report each variant of *names* (every one if empty), one line each."""
    settings = PlatformSettings.from_env()
    demo = DataRoot(settings.data_root)
    catalog = settings.kappa_source().catalog
    for name in names or VARIANTS:
        start = time.perf_counter()
        training = settings.training
        compressor, npe, split = training.compressor, training.npe, training.split
        if name == "tile_split":
            split = SplitSpec("tile")
        elif name == "square":
            compressor = dataclasses.replace(compressor, symmetries="square")
            npe = dataclasses.replace(npe, symmetries="square")
        elif name != "one_realization":
            sys.exit(f"unknown variant {name!r}; expected one of {VARIANTS}")
        root = _root_for(demo, name, catalog)
        train_compressor(root, LMAX, NOISE, compressor, split=split, accelerator="cpu")
        train_npe(root, LMAX, NOISE, npe, device="cpu")
        r = fom_report(root, LMAX, NOISE, device="cpu").record
        c, r2 = r["calibration"], r["r2_test"]
        print(
            f"{name}: fiducial FoM {r['fom_fiducial_median']:.1f} +- {r['fom_fiducial_std']:.1f},"
            f" prior {r['fom_prior']:.1f}, test {r['fom_test_median']:.1f} "
            f"[{r['fom_test_lo_16']:.1f}, {r['fom_test_hi_84']:.1f}], coverage "
            f"{c['coverage_68']:.2f}/{c['coverage_95']:.2f} on {c['n_test']} tiles, R^2 "
            + ", ".join(f"{p} {v:.3f}" for p, v in r2.items() if v is not None)
            + f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
