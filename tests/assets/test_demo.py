"""`make demo`'s driver records real runs in the instance and reports what it made."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pytest

from lensing_assets import demo


def test_demo_materializes_into_the_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kappa and tiles of sim 109 at lmax 200 land in the data root and the instance."""
    root = tmp_path / "data"
    (tmp_path / "home").mkdir()
    for name in [n for n in os.environ if n.startswith("LENSING_")]:
        monkeypatch.delenv(name)  # the demo reads its settings from the environment
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LENSING_DATA_ROOT", str(root))
    monkeypatch.setenv("LENSING_NSIDE", "128")
    monkeypatch.chdir(tmp_path)
    assert demo.main(["--sims", "109", "--lmax", "200", "--train"]) == 0
    out = capsys.readouterr().out
    for job, key in [
        ("kappa_job", "109"),
        ("tiles_job", "109|200"),
        ("shards_job", "200|des_y3"),
        ("hf_dataset_job", "-"),
    ]:
        assert re.search(rf"{job}\s+{re.escape(key)}\s+ok", out), (job, key)
    assert "lmax_200_lsst_y10" in out
    assert "sky_coverage: 0.96" in out
    assert "tiles[109|200]: data/tiles/lmax200/sim00109.npz" in out  # relative to the cwd
    assert (root / "tiles" / "lmax200" / "sim00109.npz").is_file()
    instance = dg.DagsterInstance.get()
    assert "109|200" in instance.get_materialized_partitions(dg.AssetKey("tiles"))
