"""One sim's products made twice, in two processes and two data roots, are the same bytes.

The synthetic maps are drawn from a generator seeded by the sim id, the noise by (sim id,
noise level), and every writer is deterministic (no timestamps, fixed parquet settings), so
the kappa file, the tile file, the shards and the dataset revision of a sim do not depend on
when, where or in which process they were made.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.shell import REPO

# One sim through every per-sim and dataset step, in a fresh interpreter.
MAKE_SIM_109 = """
import sys
from pathlib import Path
from lensing_core.dataset.hf import write_hf_revision
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.products import make_kappa, make_tiles
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

root = DataRoot(Path(sys.argv[1]))
catalog = synthetic_catalog(110)
options = TilingOptions(nthreads=2)
make_kappa(root, SyntheticSource(catalog, nside=128), 109, options)
make_tiles(root, 109, 200, options)
for noise in NOISE_LEVELS:
    write_config_shards(root, catalog, 200, noise, [109], scheme="belts",
                        noise_convention="per_component")
write_hf_revision(root.hf_dataset.dir, tmp_root=root.tmp_root, scheme="belts",
                  noise_convention="per_component")
"""


def _layout(root: Path) -> dict[str, bytes]:
    """Every file a reader sees under *root* (temporaries excluded), by relative path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".tmp" not in path.relative_to(root).parts
    }


def test_one_sim_made_twice_in_two_processes_is_byte_identical(tmp_path: Path) -> None:
    """kappa, tiles, shards and revision of sim 109: same files, same bytes."""
    roots = [tmp_path / "first", tmp_path / "second"]
    for root in roots:
        done = subprocess.run(
            [sys.executable, "-c", MAKE_SIM_109, str(root)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    first, second = (_layout(root) for root in roots)
    assert {"kappa/sim00109.npz", "tiles/lmax200/sim00109.npz"} <= set(first)
    assert "hf_dataset/data/lmax_200_des_y3/shards.json" in first
    assert "hf_dataset/revision.json" in first
    assert sum(name.endswith(".parquet") for name in first) == 3
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
