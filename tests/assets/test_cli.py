"""The README's commands, run as a user would, from the project's environment (env.sh)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.storage import DataRoot
from tests.fixtures.shell import REPO, shell, user_environment


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no Dagster CLI defaults, an own instance and data root."""
    return user_environment(tmp_path, LENSING_NSIDE="256")  # band limit 512: up to lmax 400


@pytest.mark.slow
def test_readme_cli_materializes_109_400(user_env: dict[str, str]) -> None:
    """Bare CLI fails with the command to run; that command, then `-m lensing_assets`, work."""
    registered = shell("python -m lensing_assets.register", user_env)
    assert registered.returncode == 0, registered.stderr[-3000:]
    # the 791 sims and 31 realizations of the fiducial (16 per point, sim 109 one of them)
    assert "registered 822 new sims of 822 (synthetic source" in registered.stdout
    again = shell("python -m lensing_assets.register", user_env)
    assert "registered 0 new sims of 822" in again.stdout
    bare_tiles = "dagster asset materialize --select tiles --partition '109|400'"
    first = shell(bare_tiles, user_env)
    assert first.returncode != 0
    hint = "dagster asset materialize --select kappa_maps --partition 109"
    assert "kappa maps of sim 109 are missing" in first.stdout + first.stderr
    assert hint in first.stdout + first.stderr

    made = shell(hint, user_env)
    assert made.returncode == 0, made.stderr[-3000:]
    tiles_run = shell(
        "dagster asset materialize -m lensing_assets --select tiles --partition '109|400'", user_env
    )
    assert tiles_run.returncode == 0, tiles_run.stderr[-3000:]
    root = DataRoot(Path(user_env["LENSING_DATA_ROOT"]))
    by_noise, meta = root.read_tiles(109, 400, NOISE_LEVELS)
    assert by_noise["des_y3"].shape == (12, 4, 256, 256)
    assert meta["sim_id"] == 109
    assert meta["lmax"] == 400
    assert np.isfinite(by_noise["lsst_y10"]).all()

    again = shell(bare_tiles, user_env)
    assert again.returncode == 0, again.stderr[-3000:]

    # The runs were recorded in the instance that the repository's dagster.yaml configures.
    home = Path(user_env["DAGSTER_HOME"])
    assert (home / "dagster.yaml").resolve() == REPO / "dagster.yaml"
    assert (home / "history" / "runs.db").is_file() or (home / "storage").is_dir()
    listed = shell(
        "python -c 'import dagster as dg; i = dg.DagsterInstance.get(); "
        'print(sorted(i.get_materialized_partitions(dg.AssetKey("tiles"))))\'',
        user_env,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "109|400" in listed.stdout


@pytest.mark.slow
def test_definitions_validate(user_env: dict[str, str]) -> None:
    """`dagster definitions validate` accepts the code location."""
    result = shell("dagster definitions validate -m lensing_assets", user_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
