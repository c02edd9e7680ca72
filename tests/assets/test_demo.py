"""`make demo`'s driver records real runs in the instance and reports what it made."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from lensing_assets import demo


def test_demo_materializes_into_the_instance(capsys: pytest.CaptureFixture[str]) -> None:
    """Kappa and tiles of sim 109 at lmax 200 land in the data root and the instance."""
    assert demo.main(["--sims", "109", "--lmax", "200"]) == 0
    out = capsys.readouterr().out
    assert "kappa_job         109  ok" in out
    assert "tiles_job     109|200  ok" in out
    assert "sky_coverage: 0.96" in out
    root = Path(os.environ["LENSING_DATA_ROOT"])
    assert (root / "tiles" / "lmax200" / "sim00109.npz").is_file()
    instance = dg.DagsterInstance.get()
    assert "109|200" in instance.get_materialized_partitions(dg.AssetKey("tiles"))
