"""`make demo` runs the whole graph, the compressor really learns, and a rerun is identical.

The full demo (64 sims at nside 256) is what the README reports; this runs the same command
on the same 64 sims at nside 128 (maps 4 times smaller, lmax-200 tiles alike), from an empty
data root and instance, and checks what it prints; then again from another empty data root
and instance, and compares the two FoM records. 64 sims, not fewer: split by simulation,
32 would leave the compressor 19 sims to learn from and the NPE 5, too few to pass the
learning checks (measured: fiducial FoM 1.5 times the prior's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.fixtures.shell import shell, user_environment

REPORT = Path("models") / "npe" / "lmax200_des_y3" / "fom_result.json"


def _make_demo(folder: Path) -> tuple[dict[str, str], str]:
    """``make demo`` of the small suite with an instance and data root under *folder*."""
    env = user_environment(folder, LENSING_SUITE="101-164", LENSING_NSIDE="128")
    done = shell("make --no-print-directory demo", env, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return env, done.stdout


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """The demo run once: its folder, environment and printout."""
    folder = tmp_path_factory.mktemp("demo")
    env, out = _make_demo(folder)
    return folder, env, out


def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number of a JSON record with its path (strings, such as file paths, skipped)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}/{index}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


@pytest.mark.slow
def test_make_demo_trains_and_reports(
    first_demo: tuple[Path, dict[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, env, out = first_demo
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
    report = folder / "data" / REPORT
    assert f"FoM report 200|des_y3: {report}" in out
    assert (folder / "data" / "reports" / "fom" / "lmax200_des_y3.png").is_file()
    # the instance's dagster.yaml (linked by env.sh) puts its storage under $DAGSTER_HOME
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert "200|des_y3" in instance.get_materialized_partitions(dg.AssetKey("fom_report"))


@pytest.mark.slow
def test_make_demo_twice_gives_the_same_fom_record(
    first_demo: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """A second demo from scratch: every number of fom_result.json is the same."""
    folder, _, _ = first_demo
    _make_demo(tmp_path)
    first, second = (
        json.loads((root / "data" / REPORT).read_text()) for root in (folder, tmp_path)
    )
    numbers = dict(_numbers(first))
    assert len(numbers) > 30  # FoMs of the 12 fiducial tiles, percentiles, coverage, ...
    assert dict(_numbers(second)) == numbers
