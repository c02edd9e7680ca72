"""Peak memory and time of Born ray tracing as the number of shells grows.

Writes tiny-format but full-size Gower Street simulation directories (Poisson particle
counts at nside 2048, int32, 200 MB a shell) with 4 and 12 shells in front of the sources
under a temporary folder, and runs ``born_convergence`` to nside 1024 on each in a fresh
child process, which reports wall time and peak resident memory. The target: at most 3 GB,
and no growth with the number of shells.

Usage: ``python bench/bench_born.py [--nside 2048] [--nside-out 1024] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' directory writer

from lensing_core.sims.catalog import FIDUCIAL_PARAMS
from lensing_core.sims.gower_street import born_convergence
from lensing_core.sims.theory import des_y3_like_nz
from tests.fixtures.gower import write_gower_sim


def _child(sim_dir: str, nside_out: int, queue: mp.Queue) -> None:
    start = time.perf_counter()
    maps = born_convergence(Path(sim_dir), FIDUCIAL_PARAMS, des_y3_like_nz(), nside_out=nside_out)
    queue.put(
        {
            "seconds": time.perf_counter() - start,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "std": maps.std(axis=1).tolist(),
        }
    )


def _run(sim_dir: Path, nside_out: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(str(sim_dir), nside_out, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    """Write the two simulations, trace them, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nside", type=int, default=2048)
    parser.add_argument("--nside-out", type=int, default=1024)
    args = parser.parse_args()
    rng = np.random.default_rng(2048)

    def counts(step: int, z_near: float, z_far: float, nside: int) -> np.ndarray:
        del step, z_near, z_far
        return rng.poisson(20.0, size=12 * nside * nside).astype(np.int32)

    work = Path(tempfile.mkdtemp(prefix="bench-born-"))
    try:
        # The last edge lies behind every source (weight zero: that shell is never read).
        layouts = {
            4: (0.0, 0.3, 0.6, 1.0, 2.2, 3.0),
            12: (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.1, 1.4, 1.8, 2.2, 3.0),
        }
        print(f"nside {args.nside} shells -> nside {args.nside_out} maps")
        for n_shells, edges in layouts.items():
            sim_dir = work / f"sim{n_shells:05d}"
            write_gower_sim(
                sim_dir, FIDUCIAL_PARAMS, nside=args.nside, z_edges=edges, counts=counts
            )
            result = _run(sim_dir, args.nside_out)
            print(
                f"{n_shells:3d} shells (+1 at z 2.2-3): {result['seconds']:6.1f} s, "
                f"peak RSS {result['peak_rss_gb']:.2f} GB"
            )
            shutil.rmtree(sim_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
