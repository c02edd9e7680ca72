"""Tests of :mod:`lensing_core.sims.theory`: n(z), cosmology and convergence spectra."""

from __future__ import annotations

import numpy as np
import pyccl as ccl
import pytest

from lensing_core.sims.theory import (
    DES_Y3_LIKE_MEAN_Z,
    SPEED_OF_LIGHT_KM_S,
    ccl_cosmology,
    convergence_tracers,
    des_y3_like_nz,
    hilbert2011_shift,
    kappa_cls,
    kappa_empty_beam,
)

LMAX = 1500


@pytest.fixture(scope="module")
def fiducial_cls(nz: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Return the fiducial convergence spectra up to LMAX."""
    from tests.fixtures.maps import FIDUCIAL_TEST_PARAMS

    return kappa_cls(FIDUCIAL_TEST_PARAMS, nz, LMAX)


# --- n(z) ------------------------------------------------------------------


def test_nz_shape_and_normalisation(nz: tuple[np.ndarray, np.ndarray]) -> None:
    """Four non-negative rows, each of unit integral."""
    z, n = nz
    assert z.ndim == 1
    assert n.shape == (4, z.size)
    assert np.all(n >= 0)
    np.testing.assert_allclose(np.trapezoid(n, z, axis=1), 1.0, rtol=1e-12)


def test_nz_means_are_des_y3_like(nz: tuple[np.ndarray, np.ndarray]) -> None:
    """Mean redshifts are 0.33, 0.52, 0.74 and 0.94."""
    z, n = nz
    np.testing.assert_allclose(np.trapezoid(n * z, z, axis=1), DES_Y3_LIKE_MEAN_Z, atol=2e-3)


def test_nz_means_hold_on_another_grid() -> None:
    """The means do not depend on the redshift grid."""
    z, n = des_y3_like_nz(np.linspace(0.0, 4.0, 2001))
    np.testing.assert_allclose(np.trapezoid(n * z, z, axis=1), DES_Y3_LIKE_MEAN_Z, atol=2e-3)


def test_nz_is_deterministic() -> None:
    """Two calls give the same bytes."""
    _, n1 = des_y3_like_nz()
    _, n2 = des_y3_like_nz()
    assert n1.tobytes() == n2.tobytes()


def test_nz_rejects_a_bad_grid() -> None:
    """A decreasing grid is an error."""
    with pytest.raises(ValueError, match="increasing"):
        des_y3_like_nz(np.array([1.0, 0.5, 2.0]))


# --- cosmology ---------------------------------------------------------------


def test_omega_m_round_trip_includes_neutrinos(fiducial_params: dict[str, float]) -> None:
    """Omega_m given is pyccl Omega_m, neutrinos taken out of Omega_c."""
    cosmo = ccl_cosmology(fiducial_params)
    assert cosmo["Omega_m"] == pytest.approx(fiducial_params["Omega_m"], abs=1e-4)
    # 0.06 eV of neutrinos is Omega_nu h^2 ~ 0.06 / 93.14: it comes out of Omega_c
    omega_nu = 0.06 / 93.14 / fiducial_params["h"] ** 2
    assert cosmo["Omega_nu_mass"] == pytest.approx(omega_nu, rel=0.02)
    assert cosmo["Omega_c"] == pytest.approx(
        fiducial_params["Omega_m"] - fiducial_params["Omega_b"] - cosmo["Omega_nu_mass"], abs=1e-12
    )
    assert cosmo["sigma8"] == pytest.approx(fiducial_params["sigma_8"])
    assert cosmo["w0"] == pytest.approx(fiducial_params["w"])
    assert cosmo["wa"] == 0.0


@pytest.mark.parametrize("m_nu", [0.06, 0.14])
def test_omega_m_round_trip_heavier_neutrinos(
    fiducial_params: dict[str, float], m_nu: float
) -> None:
    """The round trip holds at low Omega_m and the heaviest neutrinos."""
    params = fiducial_params | {"Omega_m": 0.15, "m_nu": m_nu}
    assert ccl_cosmology(params)["Omega_m"] == pytest.approx(0.15, abs=1e-4)


def test_cosmology_accepts_omega_bh2_and_s8(fiducial_params: dict[str, float]) -> None:
    """Omega_bh2 and S8 stand in for Omega_b and sigma_8."""
    params = {k: v for k, v in fiducial_params.items() if k not in ("Omega_b", "sigma_8")}
    cosmo = ccl_cosmology(params)
    assert cosmo["Omega_b"] == pytest.approx(fiducial_params["Omega_b"], rel=1e-6)
    assert cosmo["sigma8"] == pytest.approx(fiducial_params["sigma_8"], rel=1e-9)


def test_cosmology_names_a_missing_parameter(fiducial_params: dict[str, float]) -> None:
    """A missing parameter is named in the error."""
    params = {k: v for k, v in fiducial_params.items() if k != "n_s"}
    with pytest.raises(KeyError, match="n_s"):
        ccl_cosmology(params)


# --- spectra -------------------------------------------------------------------


def test_kappa_cls_shape_symmetry_and_sign(fiducial_cls: np.ndarray) -> None:
    """Shape (4, 4, lmax + 1), symmetric, zero below ell 2, positive above."""
    assert fiducial_cls.shape == (4, 4, LMAX + 1)
    np.testing.assert_array_equal(fiducial_cls, fiducial_cls.transpose(1, 0, 2))
    np.testing.assert_array_equal(fiducial_cls[..., :2], 0.0)
    assert np.all(fiducial_cls[..., 2:] > 0)


@pytest.mark.parametrize("ell", [2, 10, 100, 1000, LMAX])
def test_higher_bins_have_more_power(fiducial_cls: np.ndarray, ell: int) -> None:
    """Auto power grows with bin redshift; each ell is a valid covariance."""
    auto = np.diagonal(fiducial_cls[..., ell])
    assert np.all(np.diff(auto) > 0)
    # correlation coefficients are physical
    corr = fiducial_cls[..., ell] / np.sqrt(np.outer(auto, auto))
    assert np.all(corr <= 1.0 + 1e-12)
    assert np.all(np.linalg.eigvalsh(fiducial_cls[..., ell]) > 0)


def test_convergence_vs_shear_ell_factor(
    fiducial_params: dict[str, float], nz: tuple[np.ndarray, np.ndarray]
) -> None:
    """C^gamma = (l+2)(l-1) / (l(l+1)) C^kappa for pyccl's shear tracer on the same n(z)."""
    cosmo = ccl_cosmology(fiducial_params)
    z, n = nz
    kappa = convergence_tracers(cosmo, nz)[3]
    shear = ccl.WeakLensingTracer(cosmo, dndz=(z, n[3]))
    ell = np.array([2.0, 3.0, 5.0, 10.0, 100.0])
    ratio = ccl.angular_cl(cosmo, shear, shear, ell) / ccl.angular_cl(cosmo, kappa, kappa, ell)
    np.testing.assert_allclose(ratio, (ell + 2) * (ell - 1) / (ell * (ell + 1)), rtol=1e-6)


def _limber_reference(
    params: dict[str, float], nz: tuple[np.ndarray, np.ndarray], ells: np.ndarray
) -> np.ndarray:
    """Convergence spectra (4, 4, len(ells)) from a plain numpy Limber integral."""
    cosmo = ccl_cosmology(params)
    z, n = nz
    zg = np.linspace(1e-3, z[-1], 1500)
    ng = np.stack([np.interp(zg, z, n_i) for n_i in n])
    a = 1.0 / (1.0 + zg)
    chi = cosmo.comoving_radial_distance(a)  # Mpc
    # n(z) dz -> n(chi) dchi
    n_chi = ng / np.gradient(chi, zg)
    n_chi /= np.trapezoid(n_chi, chi, axis=1)[:, None]
    # q(chi) = 3/2 Om (H0/c)^2 chi/a int_chi dchi' n(chi') (chi' - chi)/chi'
    h0_c = cosmo["h"] * 100.0 / SPEED_OF_LIGHT_KM_S  # 1/Mpc
    q = np.empty_like(n_chi)
    for k in range(chi.size):
        tail = slice(k, None)
        integrand = n_chi[:, tail] * (chi[tail] - chi[k]) / chi[tail]
        q[:, k] = np.trapezoid(integrand, chi[tail], axis=1)
    q *= 1.5 * cosmo["Omega_m"] * h0_c**2 * chi / a
    out = np.empty((4, 4, ells.size))
    for m, ell in enumerate(ells):
        k = (ell + 0.5) / chi
        pk = np.array(
            [ccl.nonlin_matter_power(cosmo, k_i, a_i) for k_i, a_i in zip(k, a, strict=True)]
        )
        # full-sky convergence: kappa = l(l+1)/2 psi, and Limber uses (l+1/2)
        factor = (ell * (ell + 1) / (ell + 0.5) ** 2) ** 2
        integrand = q[:, None, :] * q[None, :, :] / chi**2 * pk
        out[..., m] = factor * np.trapezoid(integrand, chi, axis=-1)
    return out


def test_kappa_cls_match_an_independent_limber_integral(
    fiducial_params: dict[str, float],
    nz: tuple[np.ndarray, np.ndarray],
    fiducial_cls: np.ndarray,
) -> None:
    """Fails if the spectra carried the shear ell factor, an h factor, or the wrong Omega_m."""
    ells = np.array([2, 5, 37, 100, 523, LMAX])
    reference = _limber_reference(fiducial_params, nz, ells.astype(float))
    np.testing.assert_allclose(fiducial_cls[..., ells], reference, rtol=0.01)


# --- lognormal shifts ------------------------------------------------------------


def test_empty_beam_convergence(
    fiducial_params: dict[str, float], nz: tuple[np.ndarray, np.ndarray]
) -> None:
    """Empty-beam convergence is a few percent and grows with z and Omega_m."""
    eb = kappa_empty_beam(fiducial_params, nz)
    assert eb.shape == (4,)
    assert np.all(np.diff(eb) > 0)
    # the empty beam of a source at z ~ 1 is a few percent (e.g. Hilbert et al. 2011)
    assert 0.005 < eb[0] < eb[-1] < 0.1
    # linear in Omega_m at fixed distances would be exact; here distances change a little
    heavier = kappa_empty_beam(fiducial_params | {"Omega_m": 0.4}, nz)
    assert np.all(heavier > eb)


def test_empty_beam_of_a_single_source_plane(fiducial_params: dict[str, float]) -> None:
    """A narrow n(z) gives the single-plane empty beam, in closed form for Einstein-de Sitter.

    With Omega_m = 1 distances are analytic, chi = 2 c / H0 (1 - 1 / sqrt(1 + z)).
    """
    z = np.linspace(0.0, 2.0, 4001)
    z_s = 1.0
    n = np.exp(-0.5 * ((z - z_s) / 0.002) ** 2)[None, :]
    eds = fiducial_params | {"Omega_m": 0.999, "m_nu": 0.0, "Omega_b": 0.04, "w": -1.0}
    eb = kappa_empty_beam(eds, (z, n))[0]
    # EdS: chi = 2c/H0 (1 - 1/sqrt(1+z)); with x = H0 chi / c, 1+z = 1/(1-x/2)^2
    x_s = 2.0 * (1.0 - 1.0 / np.sqrt(1.0 + z_s))
    x = np.linspace(0.0, x_s, 20001)
    analytic = 1.5 * np.trapezoid(x * (x_s - x) / x_s / (1.0 - x / 2.0) ** 2, x)
    assert eb == pytest.approx(analytic, rel=5e-3)


def test_hilbert_shift_lies_inside_the_empty_beam(
    fiducial_params: dict[str, float], nz: tuple[np.ndarray, np.ndarray]
) -> None:
    """The Hilbert shift is positive and inside the physical bound."""
    shift = hilbert2011_shift(nz)
    assert np.all(shift > 0)
    assert np.all(shift < kappa_empty_beam(fiducial_params, nz))
