"""Tests of :mod:`lensing_core.sims.catalog`: the synthetic design, suites and the CSV reader.

The Gower Street reader is checked on small CSV files written under ``tmp_path`` in the real
format (category row, column-name row, CRLF line ends); the real table is never read here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lensing_core.sims.catalog import (
    FIDUCIAL_PARAMS,
    FIDUCIAL_SIM_ID,
    GOWER_STREET_RANGES,
    PARAM_KEYS,
    PARAM_NAMES,
    SYNTHETIC_DESIGN_SEED,
    SimCatalog,
    parse_suite,
    read_gower_street_csv,
    s8_from,
    synthetic_catalog,
)

# the specification's rounded fiducial values and the precision they are quoted at
FIDUCIAL_QUOTED = {
    "Omega_m": (0.30066, 5e-6),
    "sigma_8": (0.80466, 5e-6),
    "S8": (0.8055, 5e-5),
    "w": (-0.679, 5e-4),
    "h": (0.683, 5e-4),
    "n_s": (0.9713, 5e-5),
    "m_nu": (0.06, 1e-12),
}

CATEGORY_ROW = ",,,Cosmological parameters,,,,,,,Derived parameters,,,"
HEADER_ROW = (
    "Serial Number,Run,Job,Omega_m,sigma_8,w,Omega_b little_h^2,little_h,n_s,m_nu,Omega_b,"
    "Comment,RunTime (hours),WhereRun"
)
ROW_109 = (
    "109,C,109,0.3006605338,0.8046637795,-0.6787827802,0.02239784866,0.6830365788,"
    "0.9712948741,0.06,0.04800852705,Verification run - naive treatment of neutrinos,"
    "22.76667,Wilkes"
)
ROW_1 = (
    "1,C,1,0.2900404837,0.7657514029,-1.008941473,0.02236562735,0.6673620556,0.949651544,"
    "0.06,0.0502178441,Verification run - naive treatment of neutrinos,19.58333,Wilkes"
)
ROW_791 = (
    "791,S,11,0.264,0.9369610429,-0.5325565156,0.02233498592,0.6855787707,0.9627050738,"
    "0.08121722765,0.04751940139,,27.71667,Wilkes"
)


def _write_table(path: Path, rows: list[str], *, final_newline: bool = False) -> Path:
    """Write a table in the real file's layout: two header rows, CRLF line ends."""
    text = "\r\n".join([CATEGORY_ROW, HEADER_ROW, *rows])
    path.write_bytes((text + ("\r\n" if final_newline else "")).encode())
    return path


@pytest.fixture(scope="module")
def full_catalog() -> SimCatalog:
    """Build the default synthetic suite (791 sims)."""
    return synthetic_catalog()


# --- the synthetic design ----------------------------------------------------------------


def test_fiducial_sim_109_has_the_fiducial_parameters(
    full_catalog: SimCatalog, fiducial_params: dict[str, float]
) -> None:
    """Sim 109 carries the Gower Street fiducial values, at the precision they are quoted."""
    assert FIDUCIAL_SIM_ID == 109
    sim = full_catalog[109]
    for key, (value, tol) in FIDUCIAL_QUOTED.items():
        assert sim[key] == pytest.approx(value, abs=tol), key
    for key in PARAM_KEYS:
        assert sim[key] == pytest.approx(fiducial_params[key], rel=1e-12), key
        assert FIDUCIAL_PARAMS[key] == pytest.approx(fiducial_params[key], rel=1e-12), key


def test_full_suite_has_791_sims_numbered_from_one(full_catalog: SimCatalog) -> None:
    """791 simulations with ids 1..791, each with every parameter."""
    assert len(full_catalog) == 791
    assert full_catalog.sim_ids == list(range(1, 792))
    assert list(full_catalog) == full_catalog.sim_ids
    for sim_id in full_catalog:
        assert set(PARAM_KEYS) <= set(full_catalog[sim_id])


@pytest.mark.parametrize("key", sorted(GOWER_STREET_RANGES))
def test_every_sim_within_gower_street_ranges(full_catalog: SimCatalog, key: str) -> None:
    """Every parameter of every sim lies in the Gower Street prior range."""
    ranges = {
        "Omega_m": (0.12, 0.50),
        "sigma_8": (0.42, 1.31),
        "S8": (0.50, 1.00),
        "w": (-1.79, -0.34),
        "h": (0.61, 0.78),
        "n_s": (0.947, 0.984),
        "Omega_bh2": (0.0219, 0.0228),
        "m_nu": (0.06, 0.14),
    }
    assert GOWER_STREET_RANGES[key] == ranges[key]
    lo, hi = ranges[key]
    values = np.array([full_catalog[i][key] for i in full_catalog])
    assert np.all((values >= lo) & (values <= hi)), (key, values.min(), values.max())
    # space filling: the design spans most of each range
    assert values.max() - values.min() > 0.9 * (hi - lo)


def test_s8_and_omega_b_are_derived(full_catalog: SimCatalog) -> None:
    """``S8 = sigma_8 sqrt(Omega_m / 0.3)`` for every sim; Omega_b = Omega_b h^2 / h^2."""
    assert s8_from(0.3, 0.8) == pytest.approx(0.8)
    assert s8_from(0.27, 0.9) == pytest.approx(0.9 * math.sqrt(0.9))
    for sim_id in full_catalog:
        p = full_catalog[sim_id]
        assert p["S8"] == pytest.approx(p["sigma_8"] * math.sqrt(p["Omega_m"] / 0.3), rel=1e-12)
        if sim_id != FIDUCIAL_SIM_ID:  # sim 109 keeps its tabulated Omega_b
            assert p["Omega_b"] == pytest.approx(p["Omega_bh2"] / p["h"] ** 2, rel=1e-12)


def test_synthetic_design_is_deterministic_and_nested(full_catalog: SimCatalog) -> None:
    """Same design on every call; the 20-sim design is the first 20 sims of the full one."""
    again = synthetic_catalog()
    assert again.sim_ids == full_catalog.sim_ids
    for sim_id in full_catalog:
        assert dict(again[sim_id]) == dict(full_catalog[sim_id])
    small = synthetic_catalog(20)
    assert small.sim_ids == list(range(1, 21))
    for sim_id in small:
        assert dict(small[sim_id]) == dict(full_catalog[sim_id])
    # another seed is another design
    other = synthetic_catalog(20, seed=1)
    assert dict(other[1]) != dict(small[1])


def test_design_points_are_distinct(full_catalog: SimCatalog) -> None:
    """No two simulations share (Omega_m, S8)."""
    theta = full_catalog.theta()
    assert theta.shape == (791, len(PARAM_NAMES))
    assert len(np.unique(theta, axis=0)) == 791


def test_synthetic_design_is_scipys_scrambled_sobol_design(full_catalog: SimCatalog) -> None:
    """Every sim but 109 is, to the last bit, the point of scipy's scrambled Sobol' sampler.

    The catalog draws its design with numpy (:mod:`lensing_core.sims.sobol`), so that loading
    the code location does not import scipy; the suite is the one first built with
    ``scipy.stats.qmc.Sobol(d=7, rng=default_rng(SYNTHETIC_DESIGN_SEED))``.
    """
    from scipy.stats import qmc

    names = ("Omega_m", "S8", "w", "h", "n_s", "Omega_bh2", "m_nu")
    lo = np.array([GOWER_STREET_RANGES[k][0] for k in names])
    hi = np.array([GOWER_STREET_RANGES[k][1] for k in names])
    sampler = qmc.Sobol(d=7, scramble=True, rng=np.random.default_rng(SYNTHETIC_DESIGN_SEED))
    points = lo + sampler.random(4096) * (hi - lo)  # 791 sims draw 2**ceil(log2(3 * 791))
    sig_lo, sig_hi = GOWER_STREET_RANGES["sigma_8"]
    kept = []
    for row in points.tolist():
        values = dict(zip(names, row, strict=True))
        values["sigma_8"] = values.pop("S8") / math.sqrt(values["Omega_m"] / 0.3)
        if sig_lo <= values["sigma_8"] <= sig_hi:
            kept.append(values)
    assert len(kept) >= 791
    for sim_id, values in zip(full_catalog.sim_ids, kept, strict=False):
        if sim_id != FIDUCIAL_SIM_ID:
            assert {k: full_catalog[sim_id][k] for k in values} == values, f"sim {sim_id}"


def test_synthetic_design_values_are_pinned(full_catalog: SimCatalog) -> None:
    """A few values of the design written out, so that no library update can move the suite."""
    pinned = {
        1: (0.39352664049714803, 0.535128375981003, -1.4439150986354798),
        2: (0.23147577917203307, 0.8007279122248292, -0.7113091786485166),
        791: (0.36520997470244765, 0.5384151102043688, -0.8550042383931578),
    }
    for sim_id, (omega_m, s8, w) in pinned.items():
        params = full_catalog[sim_id]
        assert (params["Omega_m"], params["S8"], params["w"]) == (omega_m, s8, w)


def test_catalog_access_errors_name_the_sim(full_catalog: SimCatalog) -> None:
    """An absent sim raises ``KeyError`` naming it; entries are read-only."""
    with pytest.raises(KeyError, match="sim 99999 is not in the catalog"):
        full_catalog[99999]
    with pytest.raises(TypeError):
        full_catalog[1]["Omega_m"] = 0.3  # type: ignore[index]


def test_subset_and_theta(full_catalog: SimCatalog) -> None:
    """``subset`` keeps the chosen sims; ``theta`` stacks (Omega_m, S8) in id order."""
    sub = full_catalog.subset([109, 3])
    assert sub.sim_ids == [3, 109]
    np.testing.assert_allclose(
        sub.theta(), [[full_catalog[3][k] for k in PARAM_NAMES], [0.3006605338, 0.80554913847]]
    )
    with pytest.raises(KeyError, match="sim 5000"):
        full_catalog.subset([1, 5000])


# --- suites ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        ("full", None),
        (" FULL ", None),
        ("1-3,109", [1, 2, 3, 109]),
        ("109", [109]),
        ("5,3,4,3", [3, 4, 5]),
        ("1-3, 2-4", [1, 2, 3, 4]),
        ("790-791", [790, 791]),
    ],
)
def test_parse_suite(suite: str, expected: list[int] | None) -> None:
    """Named suites and explicit id lists with inclusive ranges."""
    assert parse_suite(suite) == expected


def test_demo_suite_contains_the_fiducial() -> None:
    """The demo suite is small and contains sim 109."""
    demo = parse_suite("demo")
    assert demo is not None
    assert 109 in demo
    assert 1 < len(demo) <= 64
    assert demo == sorted(set(demo))


@pytest.mark.parametrize(
    ("suite", "match"),
    [
        ("", "names no simulation"),
        (",", "names no simulation"),
        ("3-1", "not an increasing range"),
        ("3-1,5", "not an increasing range"),
        ("1-", "is not 'full', 'demo' or a list of sim ids"),
        ("abc", "is not 'full', 'demo' or a list of sim ids"),
        ("1-x", "is not 'full', 'demo' or a list of sim ids"),
        ("1.5", "is not 'full', 'demo' or a list of sim ids"),
        ("-3", "is not 'full', 'demo' or a list of sim ids"),
        ("demo,109", "is not 'full', 'demo' or a list of sim ids"),
    ],
)
def test_parse_suite_rejects_bad_strings(suite: str, match: str) -> None:
    """Malformed suites raise ``ValueError`` quoting the suite."""
    with pytest.raises(ValueError, match=match) as info:
        parse_suite(suite)
    assert repr(suite) in str(info.value)


# --- the Gower Street parameter table ----------------------------------------------------


def test_read_gower_street_csv_values(tmp_path: Path) -> None:
    """Columns are read by position; S8 is derived; Omega_b is the tabulated one."""
    path = _write_table(tmp_path / "gower_street_runs.csv", [ROW_1, ROW_109, ROW_791])
    catalog = read_gower_street_csv(path)
    assert catalog.sim_ids == [1, 109, 791]
    sim = catalog[109]
    assert set(PARAM_KEYS) <= set(sim)
    expected = {
        "Omega_m": 0.3006605338,
        "sigma_8": 0.8046637795,
        "w": -0.6787827802,
        "Omega_bh2": 0.02239784866,
        "h": 0.6830365788,
        "n_s": 0.9712948741,
        "m_nu": 0.06,
        "Omega_b": 0.04800852705,
    }
    for key, value in expected.items():
        assert sim[key] == value, key
    assert sim["S8"] == pytest.approx(0.8046637795 * math.sqrt(0.3006605338 / 0.3), rel=1e-14)
    assert sim["S8"] == pytest.approx(0.8055, abs=5e-5)
    assert catalog[791]["m_nu"] == 0.08121722765
    assert catalog[791]["w"] == -0.5325565156
    assert catalog[1]["Omega_m"] == 0.2900404837
    for sim_id in catalog:  # the fixture rows agree with the embedded fiducial where shared
        if sim_id == FIDUCIAL_SIM_ID:
            assert dict(catalog[sim_id]) == pytest.approx(dict(FIDUCIAL_PARAMS), rel=1e-12)
    assert str(path) in catalog.name


def test_read_gower_street_csv_tolerates_unix_newlines_and_blank_lines(tmp_path: Path) -> None:
    """LF line ends, a trailing newline and blank lines are fine; sims come out sorted."""
    path = tmp_path / "runs.csv"
    path.write_text("\n".join([CATEGORY_ROW, HEADER_ROW, ROW_791, "", ROW_1, ",,,", ""]))
    assert read_gower_street_csv(path).sim_ids == [1, 791]
    # a quoted comment holding commas does not shift the columns
    quoted = ROW_1.replace("Verification run - naive", '"Verification run, naive')
    quoted = quoted.replace("neutrinos,", 'neutrinos",')
    path2 = _write_table(tmp_path / "quoted.csv", [quoted], final_newline=True)
    assert read_gower_street_csv(path2)[1]["Omega_m"] == 0.2900404837


@pytest.mark.parametrize(
    ("bad_row", "match"),
    [
        (ROW_1.replace("0.7657514029", "seven"), r"line 4: malformed row"),
        (ROW_1.replace("0.2900404837", ""), r"line 4: malformed row"),
        ("2x,C,2" + ROW_1[5:], r"line 4: malformed row"),
        ("2,C,2,0.25,0.95,-0.79", r"line 4: expected at least 11 columns, got 6"),
        (ROW_1.replace("0.2900404837", "nan"), r"line 4: malformed row \(non-finite"),
        (ROW_1.replace("0.7657514029", "inf"), r"line 4: malformed row \(non-finite"),
        (ROW_1.replace("0.2900404837", "-0.29"), r"line 4: malformed row .*Omega_m"),
        ("-5" + ROW_1[1:], r"line 4: malformed row \(sim id -5\)"),
    ],
    ids=["non-numeric", "empty-cell", "bad-id", "short-row", "nan", "inf", "negative", "neg-id"],
)
def test_read_gower_street_csv_bad_row_names_file_and_line(
    tmp_path: Path, bad_row: str, match: str
) -> None:
    """A malformed or short row raises ``ValueError`` naming the file and the line."""
    path = _write_table(tmp_path / "broken_runs.csv", [ROW_109, bad_row, ROW_791])
    with pytest.raises(ValueError, match=match) as info:
        read_gower_street_csv(path)
    assert str(path) in str(info.value)


def test_read_gower_street_csv_duplicate_sim_id(tmp_path: Path) -> None:
    """A sim id that appears twice raises ``ValueError`` naming it and the line."""
    path = _write_table(tmp_path / "dup.csv", [ROW_1, ROW_109, ROW_1])
    with pytest.raises(ValueError, match=r"line 5: sim id 1 appears twice") as info:
        read_gower_street_csv(path)
    assert str(path) in str(info.value)


def test_read_gower_street_csv_without_rows(tmp_path: Path) -> None:
    """Header rows only: ``ValueError`` saying there are no simulation rows."""
    path = _write_table(tmp_path / "empty.csv", [])
    with pytest.raises(ValueError, match="no simulation rows"):
        read_gower_street_csv(path)


def test_read_gower_street_csv_missing_file(tmp_path: Path) -> None:
    """A missing file raises ``FileNotFoundError`` naming it."""
    path = tmp_path / "nowhere" / "gower_street_runs.csv"
    with pytest.raises(FileNotFoundError, match=r"gower_street_runs\.csv does not exist"):
        read_gower_street_csv(path)
    with pytest.raises(FileNotFoundError):
        read_gower_street_csv(str(tmp_path))  # a directory is not a table
