"""`make demo` runs the whole graph, the compressor really learns, and a rerun is identical.

The full demo (64 sims and 7 more realizations of the fiducial at nside 256) is what the
README reports; this runs the same command on the same suite at nside 128 (maps 4 times
smaller, lmax-200 tiles alike), from an empty
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
CL_REPORT = Path("models") / "cl" / "lmax200_des_y3" / "fom_result.json"
FISHER = Path("models") / "fisher" / "lmax200_des_y3" / "fisher.json"


def _make_demo(folder: Path) -> tuple[dict[str, str], str]:
    """``make demo`` of the small suite with an instance and data root under *folder*."""
    env = user_environment(folder, LENSING_SUITE="demo", LENSING_NSIDE="128")
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
    fid, n_real, n_tiles, n_seeds = re.search(
        r"fiducial FoM \(Omega_m, S8\): (\S+) at sim 109's parameters, median over (\d+) "
        r"realization\(s\) x 12 tiles \((\d+) tiles\) and over (\d+) NPE seed",
        out,
    ).groups()
    fid = float(fid)
    assert (int(n_real), int(n_tiles), int(n_seeds)) == (4, 48, 3)
    fid_std, real_std, seed_std = map(
        float, re.search(r"scatter: tile (\S+), realization (\S+), seed (\S+) ", out).groups()
    )
    assert min(fid_std, real_std, seed_std) > 0
    assert "compressor loss: mse" in out
    for point in ("sim 109's parameters", "same Omega_m and S8, other parameters at the prior"):
        pulls = re.search(
            rf"pulls at {point}.*\(4 realizations\): Omega_m \S+ \+- \S+ \(pull (\S+?)[,)].*"
            rf"S8 \S+ \+- \S+ \(pull (\S+?)[,)]",
            out,
        )
        assert pulls is not None, point
    assert "Projection offset (sim 109 minus centre): Omega_m" in out
    prior = float(re.search(r"prior FoM: (\S+)", out).group(1))
    r2_s8 = float(re.search(r"compressor test R\^2: .*S8 (\S+)", out).group(1))
    assert r2_s8 > 0.5
    assert fid > 2 * prior
    assert fid_std > 0
    assert "check test R^2 of S8 > 0.5: pass" in out
    assert re.search(
        r"calibration on \d+ test tiles: (calibrated|over-confident|under-confident|mixed) "
        r"\([01]\.\d\d inside the 68% ellipse",
        out,
    )
    assert re.search(r"calibration at the fiducial points: sim109 \S+, prior_centre \S+", out)
    assert (folder / "data" / "reports" / "calibration" / "lmax200_des_y3.png").is_file()
    report = folder / "data" / REPORT
    assert f"FoM report 200|des_y3: {report}" in out
    assert (folder / "data" / "reports" / "fom" / "lmax200_des_y3.png").is_file()
    # the instance's dagster.yaml (linked by env.sh) puts its storage under $DAGSTER_HOME
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    assert "200|des_y3" in instance.get_materialized_partitions(dg.AssetKey("fom_report"))
    _check_the_study(folder, out, fid, prior, instance)


def _fom_line(name: str, out: str) -> tuple[float, float, float, float]:
    """FoM, tile std and the 68% / 95% coverage of a printed ``FoM_{name}`` line."""
    pattern = (
        rf"FoM_{name}\s+(\S+) \+- (\S+) \(seeds \+- \S+\), coverage (\S+) / (\S+) at 68% / "
        r"95% \(\d+ test tiles\): (?:calibrated|over-confident|under-confident|mixed)"
    )
    fom, std, c68, c95 = map(float, re.search(pattern, out).groups())
    return fom, std, c68, c95


def _check_the_study(
    folder: Path, out: str, fid: float, prior: float, instance: dg.DagsterInstance
) -> None:
    """The power-spectrum baseline, the Fisher forecast and the comparison, as printed."""
    for job in ("band_powers_job", "cl_report_job", "fisher_job"):
        assert re.search(rf"{job}\s+200\|des_y3\s+ok", out), job
    assert re.search(r"study_job\s+-\s+ok", out)
    field, field_std, *_ = _fom_line("field", out)
    assert (field, field_std) == pytest.approx(
        (fid, float(re.search(r"scatter: tile (\S+),", out).group(1))), abs=0.051
    )
    cl, cl_std, cl_68, cl_95 = _fom_line("Cl", out)
    assert cl > 2 * prior  # the band powers inform too
    assert cl_std > 0
    assert 0 <= cl_68 <= cl_95 <= 1
    fisher = float(re.search(r"FoM_Fisher (\S+) \(others fixed: (\S+)", out).group(1))
    assert fisher > cl  # the band powers' Gaussian forecast bounds what an NPE gets from them
    ratios = re.search(
        r"FoM_field / FoM_Cl (\S+), FoM_field / FoM_Fisher (\S+), FoM_Cl / FoM_Fisher (\S+)", out
    ).groups()
    expected = (field / cl, field / fisher, cl / fisher)
    assert tuple(map(float, ratios)) == pytest.approx(expected, rel=0.01)
    study = folder / "data" / "reports" / "study"
    assert f"The study: {study / 'study.md'}" in out
    row = next(
        r for r in json.loads((study / "study.json").read_text())["rows"]
        if r["config"] == "lmax_200_des_y3"
    )  # fmt: skip
    assert row["fom_cl"] == pytest.approx(cl, abs=0.051)
    assert (study / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert instance.get_materialized_partitions(dg.AssetKey("cl_fom_report")) == {"200|des_y3"}


@pytest.mark.slow
def test_make_demo_twice_gives_the_same_fom_record(
    first_demo: tuple[Path, dict[str, str], str], tmp_path: Path
) -> None:
    """A second demo from scratch: every number of the FoM and Fisher records is the same."""
    folder, _, _ = first_demo
    _make_demo(tmp_path)
    for record, least in ((REPORT, 30), (CL_REPORT, 30), (FISHER, 50)):
        first, second = (
            json.loads((root / "data" / record).read_text()) for root in (folder, tmp_path)
        )
        numbers = _timeless(first)
        assert len(numbers) > least  # FoMs of the 12 fiducial tiles, percentiles, ...
        assert _timeless(second) == numbers, record


def _timeless(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of *record* but the wall-clock times (``elapsed_s``) of its trainings."""
    return {path: v for path, v in _numbers(record) if not path.endswith("/elapsed_s")}
