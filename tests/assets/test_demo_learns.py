"""`make demo` runs the whole graph and the compressor really learns (a smaller suite).

The full demo (64 sims at nside 256) is what the README reports; this runs the same command
on 32 sims at nside 128, from an empty data root and instance, and checks what it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from tests.fixtures.shell import shell, user_environment


@pytest.mark.slow
def test_make_demo_trains_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = user_environment(tmp_path, LENSING_SUITE="101-132", LENSING_NSIDE="128")
    done = shell("make --no-print-directory demo", env, timeout=1200)
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-4000:]
    for job in ("compressor_job", "npe_job", "fom_report_job"):
        assert re.search(rf"{job}\s+200\|des_y3\s+ok", out), job
    fid, fid_std = map(
        float, re.search(r"fiducial FoM \(Omega_m, S8\): (\S+) \+- (\S+)", out).groups()
    )
    prior = float(re.search(r"prior FoM: (\S+)", out).group(1))
    r2_s8 = float(re.search(r"compressor test R\^2: .*S8 (\S+)", out).group(1))
    assert r2_s8 > 0.5
    assert fid > 2 * prior
    assert fid_std > 0
    assert "check test R^2 of S8 > 0.5: pass" in out
    assert re.search(r"calibration on \d+ test tiles: [01]\.\d\d inside the 68% ellipse", out)
    report = tmp_path / "data" / "models" / "npe" / "lmax200_des_y3" / "fom_result.json"
    assert f"FoM report 200|des_y3: {report}" in out
    assert (tmp_path / "data" / "reports" / "fom" / "lmax200_des_y3.png").is_file()
    # the instance's dagster.yaml (linked by env.sh) puts its storage under $DAGSTER_HOME
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert "200|des_y3" in instance.get_materialized_partitions(dg.AssetKey("fom_report"))
