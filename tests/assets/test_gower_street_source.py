"""A tiny Gower-Street-format suite through Dagster, the source chosen by configuration only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensing_core.sims.catalog import FIDUCIAL_PARAMS
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.storage import DataRoot
from tests.assets.test_cli import user_env  # noqa: F401  (fixture)
from tests.fixtures.gower import write_gower_sim
from tests.fixtures.shell import shell

TABLE_HEAD = (
    ",,,Cosmological parameters,,,,,,,Derived parameters,,,\n"
    "Serial Number,Run,Job,Omega_m,sigma_8,w,Omega_b little_h^2,little_h,n_s,m_nu,Omega_b,Comment,RunTime (hours),WhereRun\n"
)


def _row(sim_id: int, p: dict[str, float]) -> str:
    keys = ("Omega_m", "sigma_8", "w", "Omega_bh2", "h", "n_s", "m_nu", "Omega_b")
    return (
        f"{sim_id},C,{sim_id},"
        + ",".join(f"{p[k]:.10g}" for k in keys)
        + ",tiny test suite,1.0,here\n"
    )


@pytest.mark.slow
def test_kappa_and_tiles_of_a_gower_street_sim(tmp_path: Path, user_env: dict[str, str]) -> None:  # noqa: F811
    """LENSING_SOURCE=gower_street + folders: kappa_maps[109] and tiles[109|200] materialize."""
    params = dict(FIDUCIAL_PARAMS)
    sims_dir = tmp_path / "gower_street"
    rng = np.random.default_rng(109)

    def counts(step: int, z_near: float, z_far: float, nside: int) -> np.ndarray:
        del step, z_near, z_far
        return rng.poisson(1000.0, size=12 * nside * nside).astype(np.int32)

    write_gower_sim(sims_dir / "sim00109", params, nside=128, counts=counts, missing_steps=(3,))
    table = sims_dir / "gower_street_runs.csv"
    table.write_text(TABLE_HEAD + _row(7, params) + _row(109, params))
    env = {
        **user_env,
        "LENSING_SOURCE": "gower_street",
        "LENSING_SIMS_DIR": str(sims_dir),
        "LENSING_CATALOG_CSV": str(table),
        "LENSING_NSIDE": "128",
    }
    registered = shell("python -m lensing_assets.register", env)
    assert "registered 1 new sims of 1 (gower_street source" in registered.stdout  # no sim00007/
    kappa = shell("dagster asset materialize --select kappa_maps --partition 109", env)
    assert kappa.returncode == 0, kappa.stderr[-3000:]
    tiles = shell("dagster asset materialize --select tiles --partition '109|200'", env)
    assert tiles.returncode == 0, tiles.stderr[-3000:]

    root = DataRoot(Path(env["LENSING_DATA_ROOT"]))
    maps, meta = root.read_kappa(109)
    assert maps.shape == (4, 12 * 128**2)
    assert meta["provenance"]["source"] == "gower_street"
    assert meta["provenance"]["sim_dir"] == str(sims_dir / "sim00109")
    assert meta["params"]["Omega_m"] == pytest.approx(params["Omega_m"])
    # Poisson shot noise lenses more for the farther bins
    assert np.all(np.diff(maps.std(axis=1)) > 0)
    by_noise, _ = root.read_tiles(109, 200, NOISE_LEVELS)
    assert by_noise["noiseless"].shape == (12, 4, 128, 128)
    assert by_noise["noiseless"].std() > 0

    assert shell("python -m lensing_assets.register 7", env).returncode == 0
    missing = shell("dagster asset materialize --select kappa_maps --partition 7", env)
    assert missing.returncode != 0
    assert (
        f"simulation directory of sim 7 is missing: {sims_dir / 'sim00007'}"
        in missing.stdout + missing.stderr
    )
    assert not root.kappa_path(7).exists()
