"""Tests of :mod:`lensing_core.sims.gower_street`: shell readers, streaming and Born convergence.

Every simulation here is a tiny directory in the real file format, written by
:mod:`tests.fixtures.gower` (nside 32-64, a handful of steps).
"""

from __future__ import annotations

import logging
import math
import tracemalloc
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from scipy.integrate import quad

from lensing_core.sims.glass_cosmology import CCLGlassCosmology, glass_cosmology
from lensing_core.sims.gower_street import (
    ShellTable,
    born_convergence,
    iter_shells,
    read_control_par,
    read_shell,
    read_z_values,
    shell_filename,
)
from lensing_core.sims.theory import ccl_cosmology, des_y3_like_nz
from tests.fixtures.gower import (
    base_pixel_pattern,
    flat_wcdm_chi_mpc_h,
    uniform_counts,
    write_gower_sim,
)
from tests.fixtures.maps import FIDUCIAL_TEST_PARAMS

LOGGER = "lensing_core.sims.gower_street"
HUBBLE_DISTANCE_MPC_H = 299_792.458 / 100.0

# The over-dense lens of the Born test: +0.5 on the northern base pixels, 0 on the equatorial
# ones, -0.5 on the southern ones (mean exactly zero, unchanged by degrading).
LENS_Z = (0.3, 0.4)
LENS_BASE_DELTA = (0.5,) * 4 + (0.0,) * 4 + (-0.5,) * 4
# Narrow Gaussian source bins behind the lens.
SOURCE_Z = (0.6, 0.8, 1.0, 1.2)
SOURCE_SIGMA_Z = 0.03


@pytest.fixture
def params() -> dict[str, float]:
    """The fiducial parameters (Gower Street sim 109)."""
    return dict(FIDUCIAL_TEST_PARAMS)


# --- z_values.txt -------------------------------------------------------------------------


@pytest.mark.parametrize("twelve_columns", [False, True])
def test_read_z_values(tmp_path: Path, params: dict[str, float], twelve_columns: bool) -> None:
    sim = write_gower_sim(tmp_path, params, twelve_columns=twelve_columns)
    header = sim.z_values.read_text().splitlines()[0]
    assert header.startswith("# Step,z_far,z_near")
    table = read_z_values(sim.z_values)
    assert isinstance(table, ShellTable)
    assert len(table) == len(sim.z_edges) - 1
    # sorted by increasing z although the file lists the farthest shell first
    np.testing.assert_allclose(table.z_near, sim.z_edges[:-1])
    np.testing.assert_allclose(table.z_far, sim.z_edges[1:])
    assert table.step.tolist() == list(sim.steps)
    assert table.step[0] == len(table)  # the nearest shell is the last step
    chi = [flat_wcdm_chi_mpc_h(z, params["Omega_m"], params["w"]) for z in sim.z_edges]
    np.testing.assert_allclose(table.chi_near_mpc_h, chi[:-1], atol=1e-5)
    np.testing.assert_allclose(table.chi_far_mpc_h, chi[1:], atol=1e-5)
    assert not table.z_near.flags.writeable


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("12,0.1,0.0,0.1,288.4,0.0,288.4,0.23,0.0", "expected 10 comma-separated columns, got 9"),
        (
            "12,0.1,0.0,0.1,288.4,0.0,288.4,0.23,0.0,0.23,1.0",
            "expected 10 comma-separated columns, got 11",
        ),
        ("12,0.1,abc,0.1,288.4,0.0,288.4,0.23,0.0,0.23", "non-numeric"),
        ("11,0.1,0.0,0.1,288.4,0.0,288.4,0.23,0.0,0.23", "more than once"),
        ("12,0.05,0.0,0.05,150.0,0.0,150.0,0.12,0.0,0.12", "overlap"),
    ],
)
def test_read_z_values_rejects_bad_rows(
    tmp_path: Path, params: dict[str, float], row: str, problem: str
) -> None:
    sim = write_gower_sim(tmp_path, params)
    with sim.z_values.open("a") as handle:
        handle.write(row + "\n")
    with pytest.raises(ValueError, match=problem) as info:
        read_z_values(sim.z_values)
    assert str(sim.z_values) in str(info.value)


# --- control.par --------------------------------------------------------------------------


def test_read_control_par(tmp_path: Path, params: dict[str, float]) -> None:
    sim = write_gower_sim(tmp_path, params, nside=64)
    with sim.control_par.open("a") as handle:
        handle.write(
            "\n".join(
                [
                    "dPhase = math.cos(2.48555827755058)",
                    "dRoot = sqrt(16) + pi - math.pi  # bare names after 'from math import *'",
                    "nBig = 2 ** 10 % 1000",
                    "dNeg = -dBoxSize / 4 * +2",
                    'achTag = "gower" + "_" + achOutName',
                    "nSteps += 1",
                    "dList = [1, 2]  # not arithmetic: skipped",
                    "dUnknown = dNotDefined * 2",
                    "dOutput = max(1, 2)",
                    "",
                ]
            )
        )
    values = read_control_par(sim.control_par)
    assert values["nSideHealpix"] == 64
    assert isinstance(values["nSideHealpix"], int)
    assert values["dBoxSize"] == 1250
    assert values["achOutName"] == "run"
    assert values["w0"] == pytest.approx(params["w"], rel=1e-14)
    assert values["dPhase"] == math.cos(2.48555827755058)
    assert values["dLambda"] == pytest.approx(1 - params["Omega_m"])
    assert values["dHalfBox"] == 625.0
    assert values["dRoot"] == 4.0
    assert values["nBig"] == 24
    assert values["dNeg"] == -625.0
    assert values["achTag"] == "gower_run"
    assert values["nSteps"] == len(sim.steps) + 1
    for skipped in ("dList", "dUnknown", "dOutput"):
        assert skipped not in values


def test_read_control_par_never_executes_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "control.par"
    path.write_text(
        "\n".join(
            [
                "import math",
                "import os",
                f"__import__('os').system('touch {marker}')",
                f"x = __import__('os').system('touch {marker}')",
                f"y = os.system('touch {marker}')",
                f"z = open('{marker}', 'w')",
                "t = (1).__class__.__mro__",
                f"u = [__import__('os').system('touch {marker}') for _ in range(1)]",
                "v = math.factorial(100000)",
                "big = 9 ** 9 ** 9",
                "s = 'a' * 10",
                "nSideHealpix = 32",
                "",
            ]
        )
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        values = read_control_par(path)
    assert not marker.exists()
    assert values == {"nSideHealpix": 32}
    assert "not evaluated" in caplog.text


def test_read_control_par_syntax_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "control.par"
    path.write_text("import math\nnSideHealpix = = 3\n")
    with pytest.raises(ValueError, match="not valid Python syntax") as info:
        read_control_par(path)
    assert str(path) in str(info.value)


# --- shells and streaming -----------------------------------------------------------------


def test_iter_shells_skips_missing_shells(
    tmp_path: Path, params: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(3)

    def counts(step: int, z_near: float, z_far: float, nside: int) -> np.ndarray:
        del z_near, z_far
        return rng.poisson(200 + step, hp.nside2npix(nside)).astype(np.int32)

    sim = write_gower_sim(tmp_path, params, nside=64, counts=counts, missing_steps=(4, 9))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        shells = list(iter_shells(sim.sim_dir, nside_out=32))
    assert [s.step for s in shells] == [s for s in sim.steps if s not in (4, 9)]
    z_near = [s.z_near for s in shells]
    assert z_near == sorted(z_near)
    for step in (4, 9):
        assert shell_filename(step) in caplog.text
        assert f"step {step}" in caplog.text
    assert "skipped" in caplog.text

    # delta = n / mean(n) - 1 per shell, averaged over the children of each output pixel
    first = shells[0]
    raw = np.load(sim.shell_path(first.step)).astype(np.float64)
    delta64 = raw / raw.mean() - 1
    expected = hp.ud_grade(delta64, 32, order_in="RING", order_out="RING")
    assert first.delta.shape == (hp.nside2npix(32),)
    np.testing.assert_allclose(first.delta, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(read_shell(sim.shell_path(first.step), nside=64), delta64)


def test_iter_shells_can_select_steps(tmp_path: Path, params: dict[str, float]) -> None:
    sim = write_gower_sim(tmp_path, params)
    assert [s.step for s in iter_shells(sim.sim_dir, nside_out=16, steps=[3, 5])] == [5, 3]


def _peak_traced_bytes(sim_dir: Path, params: dict[str, float], nside_out: int) -> int:
    nz = des_y3_like_nz()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        born_convergence(sim_dir, params, nz, nside_out=nside_out)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_streaming_memory_is_flat_in_the_number_of_shells(
    tmp_path: Path, params: dict[str, float]
) -> None:
    rng = np.random.default_rng(5)

    def counts(step: int, z_near: float, z_far: float, nside: int) -> np.ndarray:
        del step, z_near, z_far
        return rng.poisson(1000, hp.nside2npix(nside)).astype(np.int32)

    nside, nside_out = 64, 32
    dirs = {}
    for n_shells in (3, 12):
        edges = np.linspace(0.0, 3.0, n_shells + 1)
        dirs[n_shells] = write_gower_sim(
            tmp_path / f"n{n_shells}", params, nside=nside, z_edges=edges, counts=counts
        ).sim_dir
    born_convergence(dirs[3], params, des_y3_like_nz(), nside_out=nside_out)  # warm caches
    peak = {n: _peak_traced_bytes(d, params, nside_out) for n, d in dirs.items()}
    # Keeping the 9 extra shells, even degraded, would add 9 output maps; allow one.
    one_output_map = hp.nside2npix(nside_out) * 8
    assert peak[12] - peak[3] < one_output_map, peak
    # and the peak itself is a few maps, not a map per shell
    assert peak[12] < 12 * hp.nside2npix(nside) * 8, peak


# --- Born convergence ---------------------------------------------------------------------


def test_uniform_shells_give_zero_convergence(tmp_path: Path, params: dict[str, float]) -> None:
    sim = write_gower_sim(tmp_path, params, nside=32, counts=uniform_counts(777))
    kappa = born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert kappa.shape == (4, hp.nside2npix(16))
    assert kappa.dtype == np.float64
    np.testing.assert_allclose(kappa, 0.0, rtol=0, atol=1e-12)


def _lens_counts(step: int, z_near: float, z_far: float, nside: int) -> np.ndarray:
    del step
    if z_near >= LENS_Z[0] - 1e-9 and z_far <= LENS_Z[1] + 1e-9:
        delta = base_pixel_pattern(nside, LENS_BASE_DELTA)
        return np.rint(1000 * (1 + delta)).astype(np.int32)
    return np.full(hp.nside2npix(nside), 1000, dtype=np.int32)


def _gaussian_nz(z: np.ndarray) -> np.ndarray:
    z_mean = np.asarray(SOURCE_Z)[:, None]
    return np.exp(-0.5 * ((z[None, :] - z_mean) / SOURCE_SIGMA_Z) ** 2)


def _born_expectation(params: dict[str, float]) -> np.ndarray:
    """
    Convergence behind the lens slab per unit overdensity, by direct integration.

    kappa(z_s) = 3/2 Omega_m (H0/c)^2 int_slab dchi (1+z) chi (chi_s - chi) / chi_s, averaged
    over n(z_s); distances of flat wCDM by quadrature (independent of pyccl and GLASS).
    """
    omega_m, w = params["Omega_m"], params["w"]

    def inv_e(z: float) -> float:
        return 1.0 / math.sqrt(omega_m * (1 + z) ** 3 + (1 - omega_m) * (1 + z) ** (3 * (1 + w)))

    def chi(z: float) -> float:
        return flat_wcdm_chi_mpc_h(z, omega_m, w)

    def kappa_point_source(z_s: float) -> float:
        chi_s = chi(z_s)

        def integrand(z: float) -> float:  # dchi = d_H dz / E(z)
            return (1 + z) * chi(z) * (chi_s - chi(z)) / chi_s * HUBBLE_DISTANCE_MPC_H * inv_e(z)

        integral = quad(integrand, *LENS_Z, epsrel=1e-10)[0]
        return 1.5 * omega_m / HUBBLE_DISTANCE_MPC_H**2 * integral

    z = np.linspace(LENS_Z[1], 1.5, 241)
    kappa_z = np.array([kappa_point_source(zs) for zs in z])
    n = _gaussian_nz(z)  # the tails in front of the lens (> 6 sigma) are negligible
    return np.trapezoid(n * kappa_z, z, axis=1) / np.trapezoid(n, z, axis=1)


@pytest.fixture(scope="module")
def born_expectation() -> np.ndarray:
    """Born convergence per unit lens overdensity, for each source bin."""
    return _born_expectation(dict(FIDUCIAL_TEST_PARAMS))


def _born_ratio(tmp_path: Path, params: dict[str, float], dz: float, expected: np.ndarray):
    edges = np.round(np.arange(0.0, 1.5 + 1e-9, dz), 6)
    sim = write_gower_sim(tmp_path, params, nside=32, z_edges=edges, counts=_lens_counts)
    z = np.linspace(0.0, 1.5, 1501)
    kappa = born_convergence(sim.sim_dir, params, (z, _gaussian_nz(z)), nside_out=32)
    pattern = base_pixel_pattern(32, LENS_BASE_DELTA)
    # the map follows the lens pattern pixel by pixel (Born: no mixing across pixels)
    np.testing.assert_array_equal(kappa[:, pattern == 0], 0.0)
    north, south = kappa[:, pattern > 0], kappa[:, pattern < 0]
    np.testing.assert_allclose(north, north[:, :1] * np.ones_like(north), rtol=1e-12)
    np.testing.assert_allclose(south, -north, rtol=1e-12)
    return north[:, 0] / (0.5 * expected)


def test_single_overdense_shell_matches_born_integral(
    tmp_path: Path, params: dict[str, float], born_expectation: np.ndarray
) -> None:
    # Shells of dz = 0.1 (dchi ~ 250-330 Mpc/h); the lens is the single shell z = 0.3-0.4.
    # GLASS's multi-plane recursion puts the shell's mass on one plane at its distance-weighted
    # mean redshift with the exact width dchi (midpoint rule): for the quadratic lensing
    # kernel the relative error is about dchi^2 / (12 chi_l (chi_s - chi_l)) ~ 0.2-0.3 %. It
    # also puts each shell's sources on one plane (error of the same order, here smaller)
    # and uses pyccl's background with radiation and massive neutrinos, not the pure flat
    # wCDM of the expectation (< 0.1 %). Seen: +0.21 %, +0.29 %, +0.26 %, +0.22 %.
    ratio = _born_ratio(tmp_path, params, 0.1, born_expectation)
    np.testing.assert_allclose(ratio, 1.0, rtol=0, atol=0.01)


def test_born_discretisation_error_shrinks_with_thinner_shells(
    tmp_path: Path, params: dict[str, float], born_expectation: np.ndarray
) -> None:
    # The same lens slab as two shells of dz = 0.05: the midpoint-rule error must drop.
    coarse = _born_ratio(tmp_path / "coarse", params, 0.1, born_expectation)
    fine = _born_ratio(tmp_path / "fine", params, 0.05, born_expectation)
    assert np.all(np.abs(fine - 1) < np.abs(coarse - 1)), (coarse, fine)
    np.testing.assert_allclose(fine, 1.0, rtol=0, atol=0.005)


def test_sources_outside_the_shells_are_an_error(tmp_path: Path, params: dict[str, float]) -> None:
    sim = write_gower_sim(tmp_path, params, z_edges=(0.0, 0.2, 0.4, 0.6))
    with pytest.raises(ValueError, match="n\\(z\\)") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(sim.z_values) in str(info.value)


def test_missing_lens_shell_is_skipped_with_a_warning(
    tmp_path: Path, params: dict[str, float], caplog: pytest.LogCaptureFixture
) -> None:
    sim = write_gower_sim(tmp_path, params, counts=uniform_counts(), missing_steps=(8,))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        kappa = born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert np.all(kappa == 0)
    assert "have no file (steps [8])" in caplog.text
    assert shell_filename(8) in caplog.text


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def sim(tmp_path: Path, params: dict[str, float]):
    """A small valid simulation at nside 32."""
    return write_gower_sim(tmp_path / "sim", params, nside=32)


@pytest.mark.parametrize("name", ["z_values.txt", "control.par"])
def test_missing_metadata_file(sim, params: dict[str, float], name: str) -> None:
    (sim.sim_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match="not found") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(sim.sim_dir / name) in str(info.value)
    with pytest.raises(FileNotFoundError, match=name):
        iter_shells(sim.sim_dir, nside_out=16)


def test_shell_of_the_wrong_size(sim, params: dict[str, float]) -> None:
    bad = sim.shell_path(sim.steps[2])
    np.save(bad, np.full(hp.nside2npix(16), 10, dtype=np.int32))
    with pytest.raises(ValueError, match="expected 12 \\* nside\\*\\*2 = 12288") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(bad) in str(info.value)
    assert "nSideHealpix = 32" in str(info.value)


def test_truncated_shell(sim, params: dict[str, float]) -> None:
    bad = sim.shell_path(sim.steps[1])
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match="truncated") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(bad) in str(info.value)


def test_shell_with_a_truncated_header(sim, params: dict[str, float]) -> None:
    bad = sim.shell_path(sim.steps[0])
    bad.write_bytes(bad.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"not a readable \.npy") as info:
        list(iter_shells(sim.sim_dir, nside_out=16))
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "make_nz",
    [
        lambda z, n: (z, n[:, :-1]),  # n one redshift short
        lambda z, n: (z, n[0]),  # 1-d n
        lambda z, n: (z[:, None], n),  # 2-d z
    ],
)
def test_bad_nz_shape(sim, params: dict[str, float], make_nz) -> None:
    z, n = des_y3_like_nz()
    with pytest.raises(ValueError, match="n of shape \\(n_bins, n_z\\)") as info:
        born_convergence(sim.sim_dir, params, make_nz(z, n), nside_out=16)
    assert str(sim.sim_dir) in str(info.value)


def test_nside_in_control_par_is_required(sim, params: dict[str, float]) -> None:
    text = sim.control_par.read_text().replace("nSideHealpix = 32", "nSideHealpix = int(32)")
    sim.control_par.write_text(text)
    with pytest.raises(ValueError, match="nSideHealpix is missing") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(sim.control_par) in str(info.value)


def test_nside_out_above_the_shell_nside(sim, params: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="exceeds the shell resolution"):
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=64)


def test_no_shell_files_at_all(sim, params: dict[str, float]) -> None:
    for path in sim.shell_files.values():
        path.unlink()
    with pytest.raises(ValueError, match="no shell files") as info:
        born_convergence(sim.sim_dir, params, des_y3_like_nz(), nside_out=16)
    assert str(sim.sim_dir) in str(info.value)


# --- the GLASS cosmology adapter ----------------------------------------------------------


def test_glass_cosmology_adapter(params: dict[str, float]) -> None:
    cosmo = glass_cosmology(params)
    h = params["h"]
    assert cosmo.Omega_m0 == pytest.approx(params["Omega_m"])
    assert cosmo.little_h == pytest.approx(h)
    assert cosmo.hubble_distance == pytest.approx(2997.92458 / h)
    chi = flat_wcdm_chi_mpc_h(1.0, params["Omega_m"], params["w"]) / h  # Mpc
    # pyccl includes radiation and massive neutrinos; the quadrature does not
    assert cosmo.comoving_distance(1.0) == pytest.approx(chi, rel=5e-4)
    pair = cosmo.transverse_comoving_distance([0.0, 0.5], 1.0)
    assert pair.shape == (2,)
    assert pair[1] == pytest.approx(cosmo.comoving_distance(1.0) - cosmo.comoving_distance(0.5))
    assert cosmo.H_over_H0(np.zeros((2, 3))).shape == (2, 3)
    assert cosmo.H_over_H0(0.0) == pytest.approx(1.0)


def test_glass_cosmology_rejects_curvature(params: dict[str, float]) -> None:
    import pyccl as ccl

    flat = ccl_cosmology(params)
    curved = ccl.Cosmology(
        Omega_c=flat["Omega_c"],
        Omega_b=flat["Omega_b"],
        h=flat["h"],
        n_s=flat["n_s"],
        sigma8=flat["sigma8"],
        Omega_k=0.05,
    )
    with pytest.raises(ValueError, match="flat"):
        CCLGlassCosmology(curved)
