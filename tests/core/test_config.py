"""Settings from the environment pick the source and the suite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lensing_core.config import AutomationSettings, PlatformSettings
from lensing_core.inference.config import TrainingSettings, compressor_preset
from lensing_core.sims.sources import GowerStreetSource, KappaNpzSource, SyntheticSource
from lensing_core.sims.synthetic import DEFAULT_SHIFT
from lensing_core.sky.tiles import TilingOptions

TABLE = """,,,Cosmological parameters,,,,,,,Derived parameters,,,
Serial Number,Run,Job,Omega_m,sigma_8,w,Omega_b little_h^2,little_h,n_s,m_nu,Omega_b,Comment,RunTime (hours),WhereRun
7,C,7,0.31,0.82,-1.0,0.0224,0.68,0.97,0.06,0.0484,,20,Wilkes
109,C,109,0.3006605338,0.8046637795,-0.6787827802,0.02239784866,0.6830365788,0.9712948741,0.06,0.04800852705,Verification run,22.7,Wilkes
"""


def test_defaults_are_the_synthetic_full_suite(tmp_path: Path) -> None:
    """No variables: synthetic source, 791 sims, nside 1024, belts, per-component noise."""
    settings = PlatformSettings.from_env({"LENSING_DATA_ROOT": str(tmp_path)})
    source = settings.source
    assert (source.name, source.suite, source.nside) == ("synthetic", "full", 1024)
    assert (settings.tiling.scheme, settings.tiling.noise_convention) == ("belts", "per_component")
    assert (settings.tiling.n_iter, settings.tiling.nthreads) == (3, None)
    assert (settings.training.preset, settings.training.accelerator) == ("full", "auto")
    assert settings.training.compressor == compressor_preset("full")
    assert (settings.hub.repo_id, settings.hub.token_env) == (None, "HF_TOKEN")
    assert (settings.automation.enabled, settings.automation.backfill_cron) == (True, "0 2 * * *")
    assert settings.data_root == tmp_path.resolve()
    # 791 sims, and 16 realizations of the fiducial at each point (sim 109 one of them)
    assert len(settings.kappa_source().catalog) == 791 + 15 + 16
    assert settings.training.npe.n_seeds == 3
    assert isinstance(settings.kappa_source(), SyntheticSource)
    assert source.synthetic_shift == DEFAULT_SHIFT == settings.kappa_source().shift


def test_every_variable_reaches_its_setting(tmp_path: Path) -> None:
    """Each LENSING_* variable sets the field the code reads."""
    settings = PlatformSettings.from_env(
        {
            "LENSING_DATA_ROOT": str(tmp_path),
            "LENSING_SUITE": "demo",
            "LENSING_NSIDE": "256",
            "LENSING_TILE_SCHEME": "legacy",
            "LENSING_NOISE_CONVENTION": "legacy",
            "LENSING_NTHREADS": "3",
            "LENSING_TRAINING_PRESET": "cpu_demo",
            "LENSING_ACCELERATOR": "cpu",
            "LENSING_HF_REPO_ID": "me/kappa",
            "LENSING_AUTOMATION": "off",
            "LENSING_BACKFILL_CRON": "0 4 * * 0",
            "LENSING_SYNTHETIC_SHIFT": "empty_beam",
            "LENSING_COMPRESSOR_LOSS": "vmim",
        }
    )
    assert (settings.source.suite, settings.source.nside) == ("demo", 256)
    assert settings.kappa_source().shift == settings.source.synthetic_shift == "empty_beam"
    assert settings.tiling == TilingOptions(scheme="legacy", noise_convention="legacy", nthreads=3)
    assert settings.training == TrainingSettings.from_preset(
        "cpu_demo", accelerator="cpu", loss="vmim"
    )
    assert settings.training.compressor.loss == "vmim"
    assert settings.training.device() == "cpu"
    assert settings.hub.repo_id == "me/kappa"
    assert settings.automation == AutomationSettings(enabled=False, backfill_cron="0 4 * * 0")
    assert settings.kappa_source().nside == 256


def test_demo_suite_and_explicit_ids() -> None:
    """LENSING_SUITE selects sims of the source's catalog."""
    assert 109 in PlatformSettings.from_env({"LENSING_SUITE": "demo"}).kappa_source().catalog
    suite = PlatformSettings.from_env({"LENSING_SUITE": "3-5,900"})
    assert suite.kappa_source().catalog.sim_ids == [
        3,
        4,
        5,
        900,
    ]


def test_fiducial_realizations_join_the_suite() -> None:
    """The demo gets 4 realizations per fiducial point, a list of ids none unless asked."""
    demo = PlatformSettings.from_env({"LENSING_SUITE": "demo"}).kappa_source().catalog
    assert demo.sim_ids == [*range(101, 165), 10001, 10002, 10003, 20001, 20002, 20003, 20004]
    assert dict(demo[10002]) == dict(demo[109])
    centre = demo[20001]
    assert (centre["Omega_m"], centre["S8"]) == pytest.approx(
        (demo[109]["Omega_m"], demo[109]["S8"])
    )
    assert centre["w"] == pytest.approx(-1.065)
    ids = PlatformSettings.from_env({"LENSING_SUITE": "101-103,109"}).kappa_source()
    assert ids.catalog.sim_ids == [101, 102, 103, 109]
    two = PlatformSettings.from_env(
        {"LENSING_SUITE": "101-103,109", "LENSING_FIDUCIAL_REALIZATIONS": "2"}
    )
    assert two.kappa_source().catalog.sim_ids == [101, 102, 103, 109, 10001, 20001, 20002]
    without_109 = PlatformSettings.from_env(
        {"LENSING_SUITE": "101-103", "LENSING_FIDUCIAL_REALIZATIONS": "2"}
    )
    assert without_109.kappa_source().catalog.sim_ids == [101, 102, 103]
    seeds = PlatformSettings.from_env({"LENSING_NPE_SEEDS": "5"})
    assert seeds.training.npe.n_seeds == 5


def test_sources_of_real_simulations_refuse_more_fiducial_realizations(tmp_path: Path) -> None:
    env = {"LENSING_SOURCE": "kappa_npz", "LENSING_KAPPA_DIR": str(tmp_path)}
    settings = PlatformSettings.from_env({**env, "LENSING_FIDUCIAL_REALIZATIONS": "4"})
    with pytest.raises(
        ValueError, match=r"FIDUCIAL_REALIZATIONS=4: the kappa_npz source holds one"
    ):
        settings.kappa_source()
    PlatformSettings.from_env({**env, "LENSING_FIDUCIAL_REALIZATIONS": "1"}).kappa_source()


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"LENSING_SOURCE": "cloud"}, "LENSING_SOURCE='cloud' is not one of"),
        ({"LENSING_NPE_SEEDS": "0"}, "LENSING_NPE_SEEDS='0' must be at least 1"),
        ({"LENSING_COMPRESSOR_LOSS": "l1"}, "LENSING_COMPRESSOR_LOSS='l1' is not one of"),
        ({"LENSING_FIDUCIAL_REALIZATIONS": "x"}, "LENSING_FIDUCIAL_REALIZATIONS='x' is not"),
        ({"LENSING_SOURCE": "kappa_npz"}, "needs LENSING_KAPPA_DIR"),
        ({"LENSING_SOURCE": "gower_street", "LENSING_SIMS_DIR": "/x"}, "needs LENSING_SIMS_DIR"),
        ({"LENSING_TILE_SCHEME": "spiral"}, "LENSING_TILE_SCHEME='spiral'"),
        ({"LENSING_NOISE_CONVENTION": "half"}, "LENSING_NOISE_CONVENTION='half'"),
        ({"LENSING_NSIDE": "big"}, "LENSING_NSIDE='big' is not an integer"),
        ({"LENSING_SUITE": "1-x"}, "suite '1-x'"),
        ({"LENSING_TRAINING_PRESET": "huge"}, "LENSING_TRAINING_PRESET='huge' is not one of"),
        ({"LENSING_ACCELERATOR": "tpu"}, "LENSING_ACCELERATOR='tpu' is not one of"),
        ({"LENSING_NTHREADS": "0"}, "LENSING_NTHREADS='0' must be at least 1"),
        ({"LENSING_AUTOMATION": "maybe"}, "LENSING_AUTOMATION='maybe' is not one of"),
        ({"LENSING_SYNTHETIC_SHIFT": "hilbert"}, "LENSING_SYNTHETIC_SHIFT='hilbert' is not one"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], match: str) -> None:
    """A bad value names the variable and what is allowed."""
    with pytest.raises(ValueError, match=match):
        PlatformSettings.from_env(env)


def test_gower_street_source_from_table(tmp_path: Path) -> None:
    """gower_street: the partitions are the table's sims; the source knows its folders."""
    table = tmp_path / "runs.csv"
    table.write_text(TABLE)
    settings = PlatformSettings.from_env(
        {
            "LENSING_SOURCE": "gower_street",
            "LENSING_SIMS_DIR": str(tmp_path),
            "LENSING_CATALOG_CSV": str(table),
        }
    )
    catalog = settings.kappa_source().catalog
    assert catalog.sim_ids == [7, 109]
    assert catalog[109]["S8"] == pytest.approx(0.8046637795 * math.sqrt(0.3006605338 / 0.3))
    source = settings.kappa_source()
    assert isinstance(source, GowerStreetSource)
    assert source.sim_dir(7) == tmp_path.resolve() / "sim00007"
    with pytest.raises(
        FileNotFoundError, match=r"simulation directory of sim 7 is missing: .*sim00007"
    ):
        source.load(7)
    with pytest.raises(ValueError, match=r"sims \[8\] are not in"):
        PlatformSettings.from_env(
            {
                "LENSING_SOURCE": "gower_street",
                "LENSING_SIMS_DIR": str(tmp_path),
                "LENSING_CATALOG_CSV": str(table),
                "LENSING_SUITE": "7-8",
            }
        ).kappa_source()


def test_kappa_npz_discovers_sims_and_has_nan_params_without_table(tmp_path: Path) -> None:
    """kappa_npz: the sims are the folders found; parameters NaN unless a table is given."""
    for sim in (3, 12):
        (tmp_path / f"sim{sim:05d}").mkdir()
        np.savez(tmp_path / f"sim{sim:05d}" / "kappa_maps.npz", kappa_bin0=np.zeros(12))
    (tmp_path / "notes").mkdir()
    settings = PlatformSettings.from_env(
        {"LENSING_SOURCE": "kappa_npz", "LENSING_KAPPA_DIR": str(tmp_path)}
    )
    catalog = settings.kappa_source().catalog
    assert catalog.sim_ids == [3, 12]
    assert math.isnan(catalog[3]["Omega_m"])
    assert isinstance(settings.kappa_source(), KappaNpzSource)
