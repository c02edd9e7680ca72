"""Benchmark the NPE's training with the summary cache against compressing every batch.

Builds a small configuration in a temporary data root (``--sims`` synthetic sims at nside
128, lmax 200, ``des_y3`` with its 4 noise realisations, the fiducial among them), trains the
compressor for ``--compressor-epochs`` epochs (``--backbone``, timm's ``test_efficientnet`` by
default), then trains the same NPE twice with ``--npe-epochs`` epochs and no early stopping:

* on the fly: every batch gathers its tiles, applies the drawn face symmetry and runs the
  frozen compressor on them (the path kept for circular rolls);
* cached: the summaries of every (tile, realisation, symmetry) of the NPE-train set are
  computed once (:func:`lensing_core.inference.pipeline.summary_table`), and every batch
  draws the same (realisation, symmetry) and looks its summary up.

Prints the wall time of both trainings (the cache's one-time build included), the ratio, the
number of compressor forward passes each made, and the largest difference between the two
trainings' validation-NLL histories (the draws are the same, so it is float rounding).
Writes the figures to ``bench/out/bench_npe_cache.json``. About 3 minutes on 2 cores with
the defaults.

Usage: ``python bench/bench_npe_cache.py [--sims 64] [--npe-epochs 50]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import SplitSpec
from lensing_core.inference.config import CompressorConfig
from lensing_core.inference.npe import NPEConfig
from lensing_core.inference.pipeline import train_compressor, train_npe
from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot

LMAX, NOISE = 200, "des_y3"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=64, help="sims besides the fiducial")
    parser.add_argument("--npe-epochs", type=int, default=50)
    parser.add_argument("--compressor-epochs", type=int, default=1)
    parser.add_argument("--backbone", default="test_efficientnet")
    args = parser.parse_args(argv)
    catalog = synthetic_catalog(max(110, args.sims + 2))
    sims = [*[s for s in catalog.sim_ids if s != FIDUCIAL_SIM_ID][: args.sims], FIDUCIAL_SIM_ID]
    with tempfile.TemporaryDirectory() as folder:
        root = DataRoot(Path(folder))
        source = SyntheticSource(catalog, nside=128)
        start = time.perf_counter()
        for sim_id in sims:
            make_kappa(root, source, sim_id)
            make_tiles(root, sim_id, LMAX)
        write_config_shards(root, catalog, LMAX, NOISE, sims)
        compressor = CompressorConfig(
            backbone=args.backbone, batch_size=16, max_epochs=args.compressor_epochs
        )
        train_compressor(root, LMAX, NOISE, compressor, split=SplitSpec(), accelerator="cpu")
        print(f"data and compressor: {time.perf_counter() - start:.0f} s", flush=True)
        cfg = dataclasses.replace(
            NPEConfig(), max_epochs=args.npe_epochs, patience=args.npe_epochs + 1
        )
        seconds, records = {}, {}
        for name, cache in (("on_the_fly", False), ("cached", True)):
            start = time.perf_counter()
            records[name] = train_npe(
                root, LMAX, NOISE, cfg, device="cpu", summary_cache=cache
            ).record
            seconds[name] = time.perf_counter() - start
    n_train, epochs = records["cached"]["n_train"], records["cached"]["epochs"]
    realizations = records["cached"]["noise_realizations"]
    passes = {
        "on_the_fly": n_train * epochs + records["on_the_fly"]["n_val"],
        "cached": n_train * realizations * 4 + records["cached"]["n_val"],  # 4 face symmetries
    }
    nll_diff = float(
        np.max(
            np.abs(
                np.subtract(
                    records["cached"]["val_nll_history"], records["on_the_fly"]["val_nll_history"]
                )
            )
        )
    )
    figures = {
        "backbone": args.backbone,
        "sims": len(sims),
        "npe_train_tiles": n_train,
        "epochs": epochs,
        "seconds": seconds,
        "compressor_passes": passes,
        "speedup": seconds["on_the_fly"] / seconds["cached"],
        "max_val_nll_difference": nll_diff,
    }
    for name in seconds:
        print(f"{name:10s} {seconds[name]:7.1f} s  {passes[name]:6d} compressor passes")
    print(
        f"speed-up {figures['speedup']:.1f}x over {epochs} epochs of {n_train} tiles; "
        f"largest validation-NLL difference {nll_diff:.2e}"
    )
    out = Path(__file__).parent / "out" / "bench_npe_cache.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
