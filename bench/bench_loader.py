"""Benchmark the fast tile loader against plain ``datasets`` row access.

Writes ``--n-tiles`` random float32 tiles of 4 x 256 x 256 as parquet shards of
``--shard-tiles`` rows (kappa as nested ``list<list<list<float>>>``, the layout ``datasets``
writes for an Array3D column; ``--layout fixed`` for fixed-size lists) in a temporary folder,
then measures tiles per second for

* ``datasets``: ``load_dataset("parquet", data_files=..., split="train")`` (offline, its
  Arrow cache in the temporary folder), then ``ds[i]["kappa"]`` with the default formatting
  for ``--sample`` random rows, once with the inferred features and once with ``features``
  declaring ``kappa`` as ``Array3D``; for reference also ``ds.with_format("numpy")[batch]``
  (whole shuffled batches, the fastest plain ``datasets`` access);
* ``lensing_core.dataset.loader``: shuffled batches of ``--batch-size`` (numpy and torch)
  from the table opened from parquet (decoded into RAM) and from the memory-mapped Arrow IPC
  cache, the one-time open costs reported separately.

Prints the rates, MB/s, the ratio loader / ``datasets`` row access (target >= 10) and the
headroom over ``--gpu-tiles-per-s``, the rate one GPU consumes tiles when training the
compressor (an assumption to replace by a measured figure). Writes the figures to
``bench/out/bench_loader.json``. About 2 minutes on 2 cores with the defaults.

Usage: ``python bench/bench_loader.py [--n-tiles 2048] [--layout list|fixed]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' shard builder

from lensing_core.dataset.loader import TileTable, iter_batches, load_tiles
from tests.fixtures.shards import nested

OUT = Path(__file__).parent / "out"
N_BINS = 4


def write_shards(
    root: Path, n_tiles: int, n_pix: int, shard_tiles: int, layout: str, rng: np.random.Generator
) -> list[Path]:
    """Parquet shards of random tiles with ids and parameters, ``train-XXXXX-of-YYYYY``."""
    root.mkdir(parents=True)
    n_shards = -(-n_tiles // shard_tiles)
    paths = []
    for shard in range(n_shards):
        first = shard * shard_tiles
        rows = min(shard_tiles, n_tiles - first)
        kappa = rng.random((rows, N_BINS, n_pix, n_pix), dtype=np.float32)
        row = np.arange(first, first + rows)
        table = pa.table(
            {
                "kappa": nested(kappa.ravel(), (N_BINS, n_pix, n_pix), layout),
                "sim_id": row // 12,
                "orientation_id": (row % 12) // 4,
                "tile_id": row % 4,
                "lmax": np.full(rows, 600),
                "noise_level": ["des_y3"] * rows,
                **{p: rng.random(rows) for p in ("Omega_m", "sigma_8", "S8", "w", "h")},
                **{p: rng.random(rows) for p in ("n_s", "Omega_b", "m_nu")},
            }
        )
        path = root / f"train-{shard:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(table, path, row_group_size=64)
        paths.append(path)
    return paths


def bench_datasets_rows(
    paths: list[Path], cache_dir: Path, features: datasets.Features | None, sample: np.ndarray
) -> dict[str, float]:
    """Open cost and tiles/s of ``ds[i]["kappa"]`` (default formatting) for *sample* rows."""
    start = time.perf_counter()
    ds = datasets.load_dataset(
        "parquet",
        data_files=[str(p) for p in paths],
        split="train",
        features=features,
        cache_dir=str(cache_dir),
    )
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in sample:
        kappa = ds[int(i)]["kappa"]
    rate = len(sample) / (time.perf_counter() - start)
    assert np.asarray(kappa, np.float32).shape[0] == N_BINS
    return {"open_s": open_s, "tiles_per_s": rate, "kappa_type": type(kappa).__name__, "ds": ds}


def bench_datasets_numpy_batches(ds: datasets.Dataset, batch_size: int, n_batches: int) -> float:
    """Tiles/s of shuffled whole-batch access ``ds.with_format("numpy")[indices]``."""
    rng = np.random.default_rng(1)
    ds = ds.with_format("numpy")
    start = time.perf_counter()
    for _ in range(n_batches):
        batch = ds[rng.choice(len(ds), batch_size, replace=False)]["kappa"]
    assert batch.shape[:2] == (batch_size, N_BINS), batch.shape
    return n_batches * batch_size / (time.perf_counter() - start)


def bench_loader(table: TileTable, batch_size: int, epochs: int, as_torch: bool) -> float:
    """Tiles/s of shuffled batches over the whole table."""
    rng = np.random.default_rng(2)
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in iter_batches(table, batch_size, shuffle=True, rng=rng, as_torch=as_torch):
            n += len(batch.tiles)
    return n / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tiles", type=int, default=2048)
    parser.add_argument("--n-pix", type=int, default=256)
    parser.add_argument("--shard-tiles", type=int, default=256)
    parser.add_argument("--layout", choices=["list", "fixed"], default="list")
    parser.add_argument("--sample", type=int, default=200, help="rows read through datasets")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--gpu-tiles-per-s", type=float, default=300.0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    tile_mb = N_BINS * args.n_pix**2 * 4 / 2**20

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-loader-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(20_250_101)
        start = time.perf_counter()
        paths = write_shards(
            work / "lmax_600_des_y3", args.n_tiles, args.n_pix, args.shard_tiles, args.layout, rng
        )
        size_mb = sum(p.stat().st_size for p in paths) / 2**20
        print(
            f"wrote {args.n_tiles} tiles of {N_BINS} x {args.n_pix} x {args.n_pix} float32 "
            f"({tile_mb:.2f} MiB each) as {len(paths)} {args.layout}-layout parquet shards, "
            f"{size_mb:.0f} MiB, in {time.perf_counter() - start:.1f} s"
        )
        record: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "tile_mb": tile_mb}

        sample = np.random.default_rng(3).choice(args.n_tiles, args.sample, replace=False)
        array3d = datasets.Features(
            {
                "kappa": datasets.Array3D((N_BINS, args.n_pix, args.n_pix), "float32"),
                **{c: datasets.Value("int64") for c in ("sim_id", "orientation_id", "tile_id")},
                "lmax": datasets.Value("int64"),
                "noise_level": datasets.Value("string"),
                **{
                    p: datasets.Value("float64")
                    for p in ("Omega_m", "sigma_8", "S8", "w", "h", "n_s", "Omega_b", "m_nu")
                },
            }
        )
        print(f"\ndatasets {datasets.__version__}: ds[i]['kappa'], {args.sample} random rows")
        hf = {}
        for name, features in (("inferred", None), ("Array3D", array3d)):
            res = bench_datasets_rows(paths, work / f"hf_cache_{name}", features, sample)
            ds = res.pop("ds")
            hf[name] = res
            print(
                f"  features {name:8s}: load_dataset {res['open_s']:6.1f} s, "
                f"{res['tiles_per_s']:7.1f} tiles/s = {res['tiles_per_s'] * tile_mb:6.1f} MiB/s "
                f"(kappa returned as {res['kappa_type']})"
            )
        numpy_rate = bench_datasets_numpy_batches(ds, args.batch_size, n_batches=8)
        hf["Array3D_numpy_batches"] = {"tiles_per_s": numpy_rate}
        print(
            f"  reference, Array3D with_format('numpy')[shuffled batch of {args.batch_size}]: "
            f"{numpy_rate:7.1f} tiles/s = {numpy_rate * tile_mb:6.1f} MiB/s"
        )
        del ds
        record["datasets"] = hf
        baseline = max(hf["inferred"]["tiles_per_s"], hf["Array3D"]["tiles_per_s"])

        print(f"\nlensing_core.dataset.loader: shuffled batches of {args.batch_size}")
        loader = {}
        opens = {
            "parquet": lambda: load_tiles(paths[0].parent),
            "cache build": lambda: load_tiles(paths[0].parent, cache_dir=work / "cache"),
            "cache open": lambda: load_tiles(paths[0].parent, cache_dir=work / "cache"),
        }
        for name, open_table in opens.items():
            start = time.perf_counter()
            table = open_table()
            open_s = time.perf_counter() - start
            loader[name] = {"open_s": open_s, "open_tiles_per_s": len(table) / open_s}
            line = f"  open ({name:11s}): {open_s:6.2f} s  ({len(table) / open_s:8.0f} tiles/s)"
            if name != "cache build":
                for as_torch in (False, True):
                    rate = bench_loader(table, args.batch_size, args.epochs, as_torch)
                    kind = "torch" if as_torch else "numpy"
                    loader[name][f"{kind}_tiles_per_s"] = rate
                    line += f"; {kind} {rate:7.0f} tiles/s = {rate * tile_mb:6.0f} MiB/s"
            print(line)
            del table
        record["loader"] = loader

    rates = [
        v[k] for v in loader.values() for k in ("numpy_tiles_per_s", "torch_tiles_per_s") if k in v
    ]
    slowest = min(rates)
    ratio = slowest / baseline
    record.update(ratio=ratio, slowest_loader_tiles_per_s=slowest)
    print(
        f"\nratio loader / datasets row access: {ratio:.0f}x (slowest loader batch rate "
        f"{slowest:.0f} tiles/s vs {baseline:.1f} tiles/s; target >= 10x)"
    )
    gpu = args.gpu_tiles_per_s
    print(
        f"GPU feed: {slowest:.0f} tiles/s = {slowest * tile_mb:.0f} MiB/s on one core vs an "
        f"assumed {gpu:.0f} tiles/s consumed per GPU: {slowest / gpu:.1f}x headroom "
        f"({'fast enough' if slowest >= 2 * gpu else 'NOT fast enough'} to keep a GPU busy); "
        f"parquet decoding alone runs at {loader['parquet']['open_tiles_per_s']:.0f} tiles/s, "
        "so decode once (or use the cache), never per epoch"
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_loader.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
