"""Benchmark the tile fast path against the straightforward per-output reference.

On one 4-bin synthetic lognormal map (sim 109, nside 1024 by default) both paths produce all
5 lmax x 3 noise levels x 12 tiles:

* fast: ``extract_tiles`` - one ducc0 analysis per map at the largest lmax, exact truncation,
  one harmonic rotation per orientation (ducc0), one synthesis per output;
* reference: ``extract_tiles_reference`` - for every (noise level, lmax, orientation, bin) a
  healpy ``map2alm`` at that lmax, healpy ``rotate_alm`` and ``alm2map``, as the published
  dataset's scripts did (they added the noise to the map, so every noise level was a new
  analysis).

Each path runs in a fresh child process, which reports its wall time and peak resident
memory (the whole process: interpreter, libraries, input maps and outputs). Prints both
times, the ratio, peak memory and the largest difference between the two outputs.

Usage: ``python bench/bench_tiles.py [--nside 1024] [--skip-reference]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np

from lensing_core.sims.catalog import FIDUCIAL_PARAMS, FIDUCIAL_SIM_ID
from lensing_core.sims.synthetic import synthetic_kappa
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE, extract_tiles, extract_tiles_reference

OUT = Path(__file__).parent / "out"


def _child(path: str, which: str, lmaxes: list[int], queue: mp.Queue) -> None:
    kappa = np.load(path)["kappa"]
    fn = extract_tiles if which == "fast" else extract_tiles_reference
    start = time.perf_counter()
    try:
        out = fn(kappa, lmaxes, NOISE_LEVELS, seed=FIDUCIAL_SIM_ID)
    except Exception as err:  # report to the parent instead of leaving it waiting
        queue.put({"error": f"{type(err).__name__}: {err}"})
        raise
    seconds = time.perf_counter() - start
    np.savez(
        OUT / f"tiles_{which}.npz", **{f"{lmax}_{noise}": t for (lmax, noise), t in out.items()}
    )
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
    )


def _run(path: Path, which: str, lmaxes: list[int]) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(str(path), which, lmaxes, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise SystemExit(f"{which} path failed: {result['error']}")
    return result


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nside", type=int, default=1024)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--lmax", type=int, nargs="+", default=list(LMAX_TO_NSIDE))
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"kappa_nside{args.nside}.npz"
    if not path.exists():
        rng = np.random.default_rng([7310, FIDUCIAL_SIM_ID])
        kappa = synthetic_kappa(FIDUCIAL_PARAMS, nside=args.nside, rng=rng).astype(np.float32)
        np.savez(path, kappa=kappa)
    n_out = len(args.lmax) * len(NOISE_LEVELS)
    print(
        f"input: 4-bin synthetic map of sim 109, nside {args.nside}; lmax {args.lmax}; "
        f"{n_out} outputs x 12 tiles"
    )
    fast = _run(path, "fast", args.lmax)
    print(f"fast path:      {fast['seconds']:8.1f} s   peak RSS {fast['peak_rss_gb']:.2f} GB")
    record = {"nside": args.nside, "lmax": args.lmax, "fast": fast}
    if not args.skip_reference:
        ref = _run(path, "reference", args.lmax)
        print(f"reference path: {ref['seconds']:8.1f} s   peak RSS {ref['peak_rss_gb']:.2f} GB")
        ratio = ref["seconds"] / fast["seconds"]
        a, b = np.load(OUT / "tiles_fast.npz"), np.load(OUT / "tiles_reference.npz")
        rel = max(float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in a.files)
        print(f"ratio reference / fast: {ratio:.1f}  (target >= 30)")
        print(f"largest |fast - reference| / max|reference| over outputs: {rel:.2e}")
        record.update(reference=ref, ratio=ratio, max_relative_difference=rel)
    (OUT / f"bench_tiles_nside{args.nside}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
