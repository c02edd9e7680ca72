"""Tests of :mod:`lensing_core.sky.rotations`: orientation schemes and alm rotation.

Convention under test: a rotation is an *active* matrix ``R``; the rotated map is
``m'(n) = m(R^T n)``.
"""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lensing_core.sky.harmonics import alm_to_cl, map2alm, n_alm, synthesize_rings
from lensing_core.sky.rotations import (
    SCHEMES,
    axis_angle_matrix,
    orientation_matrices,
    rotate_alm,
    zyz_euler_from_matrix,
)

LMAX = 24
NSIDE = 16


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _random_alm(rng: np.random.Generator, n_maps: int, lmax: int = LMAX) -> np.ndarray:
    size = (n_maps, n_alm(lmax))
    alm = rng.standard_normal(size) + 1j * rng.standard_normal(size)
    alm[:, : lmax + 1] = alm[:, : lmax + 1].real
    return alm


def _rotations() -> list[tuple[str, np.ndarray]]:
    """Every non-identity orientation of both schemes, and a fixed random rotation."""
    out = [(f"{scheme}-{k}", orientation_matrices(scheme)[k]) for scheme in SCHEMES for k in (1, 2)]
    out.append(("random", Rotation.random(random_state=1234).as_matrix()))
    return out


ROTATIONS = _rotations()
ROTATION_IDS = [name for name, _ in ROTATIONS]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_orientation_matrices_are_proper_rotations(scheme: str) -> None:
    """Three orthogonal matrices with determinant +1, the first the identity."""
    mats = orientation_matrices(scheme)
    assert mats.shape == (3, 3, 3)
    np.testing.assert_array_equal(mats[0], np.eye(3))
    for mat in mats:
        np.testing.assert_allclose(mat @ mat.T, np.eye(3), atol=1e-15)
        assert np.linalg.det(mat) == pytest.approx(1.0, abs=1e-14)


def test_default_scheme_is_belts_and_unknown_scheme_raises() -> None:
    """``belts`` is the default; an unknown name raises ``ValueError`` naming it."""
    np.testing.assert_array_equal(orientation_matrices(), orientation_matrices("belts"))
    with pytest.raises(ValueError, match="unknown orientation scheme 'rings'"):
        orientation_matrices("rings")


@pytest.mark.parametrize(("k", "axis"), [(1, (1.0, 1.0, 0.0)), (2, (1.0, -1.0, 0.0))])
def test_belts_turns_are_quarter_turns_about_diagonals(
    k: int, axis: tuple[float, float, float]
) -> None:
    """Belts orientations 1 and 2 fix ``(1, +-1, 0)/sqrt 2`` and turn by 90 degrees."""
    mat = orientation_matrices("belts")[k]
    unit = np.asarray(axis) / math.sqrt(2)
    np.testing.assert_allclose(mat @ unit, unit, atol=1e-15)
    assert np.trace(mat) == pytest.approx(1.0, abs=1e-14)  # 1 + 2 cos(angle): angle = 90 deg
    # right-handed: the perpendicular z axis goes to axis x z
    np.testing.assert_allclose(mat @ [0.0, 0.0, 1.0], np.cross(unit, [0.0, 0.0, 1.0]), atol=1e-15)


def test_belts_bring_every_base_face_onto_the_equator_once() -> None:
    """Each belts orientation puts a different ring of four base-face centres on faces 4..7."""
    centres = np.array(hp.pix2vec(1, np.arange(12), nest=True))  # (3, 12) base-face centres
    shown = []
    for mat in orientation_matrices("belts"):
        faces = hp.vec2pix(1, *(mat @ centres), nest=True)
        shown.append(set(np.flatnonzero(np.isin(faces, [4, 5, 6, 7])).tolist()))
    assert shown[0] == {4, 5, 6, 7}
    assert all(len(s) == 4 for s in shown)
    assert set().union(*shown) == set(range(12))


@pytest.mark.parametrize(
    ("axis", "angle"),
    [((0, 0, 1), 0.3), ((1, 2, -0.5), 2.1), ((1, -1, 0), math.pi / 2), ((0, 1, 0), -1.0)],
)
def test_axis_angle_matrix_matches_scipy_rotvec(
    axis: tuple[float, float, float], angle: float
) -> None:
    """Rodrigues' matrix equals scipy's rotation vector ``angle * axis / |axis|``."""
    unit = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    expected = Rotation.from_rotvec(angle * unit).as_matrix()
    np.testing.assert_allclose(axis_angle_matrix(axis, angle), expected, atol=1e-15)


@pytest.mark.parametrize(("name", "matrix"), ROTATIONS, ids=ROTATION_IDS)
def test_rotation_preserves_power_spectrum(
    rng: np.random.Generator, name: str, matrix: np.ndarray
) -> None:
    """``C_l`` of rotated alm equals that of the input to 1e-10 relative."""
    alm = _random_alm(rng, 3)
    rotated = rotate_alm(alm, matrix, nthreads=1)
    assert rotated.shape == alm.shape
    assert not np.allclose(rotated, alm)  # the rotation does something
    np.testing.assert_allclose(alm_to_cl(rotated), alm_to_cl(alm), rtol=1e-10)


@pytest.mark.parametrize(("name", "matrix"), ROTATIONS, ids=ROTATION_IDS)
def test_rotation_then_inverse_gives_back_alm(
    rng: np.random.Generator, name: str, matrix: np.ndarray
) -> None:
    """Rotating by R, then by R^T, returns the input coefficients."""
    alm = _random_alm(rng, 2)
    back = rotate_alm(rotate_alm(alm, matrix), matrix.T)
    np.testing.assert_allclose(back, alm, rtol=0, atol=1e-10 * np.abs(alm).max())


@pytest.mark.parametrize(("name", "matrix"), ROTATIONS, ids=ROTATION_IDS)
def test_ducc0_rotation_agrees_with_healpy(
    rng: np.random.Generator, name: str, matrix: np.ndarray
) -> None:
    """``rotate_alm`` equals ``healpy.rotate_alm(alm, matrix=R)`` (which works in place)."""
    alm = _random_alm(rng, 2)
    rotated = rotate_alm(alm, matrix)
    for a, r in zip(alm, rotated, strict=True):
        expected = a.copy()
        hp.rotate_alm(expected, matrix=matrix)
        np.testing.assert_allclose(r, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_rotate_alm_identity_returns_a_copy(rng: np.random.Generator) -> None:
    """The identity gives equal coefficients in a new array."""
    alm = _random_alm(rng, 1)
    out = rotate_alm(alm, np.eye(3))
    np.testing.assert_array_equal(out, alm)
    assert not np.shares_memory(out, alm)


@pytest.mark.parametrize(("name", "matrix"), ROTATIONS, ids=ROTATION_IDS)
def test_rotated_map_is_active_rotation(name: str, matrix: np.ndarray) -> None:
    """A band-limited analytic map ``f`` rotated by R equals ``f(R^T n)`` pixel by pixel.

    ``f(n) = d.n + n.Q.n`` has ell <= 2 only, so the analysis (10 iterations) is exact to
    rounding, and so is the rotated synthesis.
    """
    d = np.array([0.3, -0.5, 0.8])
    q = np.array([[0.2, 0.1, -0.3], [0.1, -0.4, 0.25], [-0.3, 0.25, 0.6]])

    def f(vec: np.ndarray) -> np.ndarray:
        return d @ vec + np.einsum("ip,ij,jp->p", vec, q, vec)

    vec = np.array(hp.pix2vec(NSIDE, np.arange(12 * NSIDE**2)))
    alm = map2alm(f(vec)[None], 8, n_iter=10)
    rotated = synthesize_rings(rotate_alm(alm, matrix), NSIDE)[0]
    np.testing.assert_allclose(rotated, f(matrix.T @ vec), rtol=0, atol=1e-10)
    # and not the passive convention (R instead of R^T), unless R is its own inverse
    if not np.allclose(matrix, matrix.T):
        assert not np.allclose(rotated, f(matrix @ vec), atol=1e-3)


def _euler_cases() -> list[tuple[str, np.ndarray]]:
    cases = [(name, mat) for name, mat in ROTATIONS]
    cases += [(f"random-{i}", Rotation.random(random_state=i).as_matrix()) for i in range(5)]
    cases += [
        ("identity", np.eye(3)),
        ("about-z-0.7", _rz(0.7)),  # gimbal lock, theta = 0
        ("about-z-minus-2.5", _rz(-2.5)),
        ("about-z-pi", _rz(math.pi)),
        ("theta-pi", _rz(0.4) @ _ry(math.pi) @ _rz(1.3)),  # gimbal lock, theta = pi
        ("theta-pi-only", _ry(math.pi)),
        ("about-x-pi", axis_angle_matrix((1, 0, 0), math.pi)),  # also theta = pi
        ("theta-tiny", _rz(0.2) @ _ry(1e-3) @ _rz(-0.9)),
        ("theta-near-pi", _rz(0.2) @ _ry(math.pi - 1e-3) @ _rz(-0.9)),
    ]
    return cases


EULER_CASES = _euler_cases()


@pytest.mark.parametrize(("name", "matrix"), EULER_CASES, ids=[n for n, _ in EULER_CASES])
def test_zyz_euler_round_trip(name: str, matrix: np.ndarray) -> None:
    """``Rz(phi) Ry(theta) Rz(psi)`` rebuilt from ``(psi, theta, phi)`` equals R."""
    psi, theta, phi = zyz_euler_from_matrix(matrix)
    assert 0.0 <= theta <= math.pi
    np.testing.assert_allclose(_rz(phi) @ _ry(theta) @ _rz(psi), matrix, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("matrix", "theta"),
    [
        (_rz(0.7), 0.0),
        (np.eye(3), 0.0),
        (_ry(math.pi), math.pi),
        (_rz(1.0) @ _ry(math.pi), math.pi),
    ],
)
def test_zyz_euler_gimbal_lock_sets_psi_zero(matrix: np.ndarray, theta: float) -> None:
    """At theta = 0 or pi only one of psi, phi is defined; psi is set to zero."""
    psi, got_theta, _ = zyz_euler_from_matrix(matrix)
    assert psi == 0.0
    assert got_theta == theta


def test_legacy_matrices_are_healpy_rotator_matrices() -> None:
    """The legacy orientations are what ``healpy.Rotator(..., eulertype="ZYZ")`` really built."""
    legacy = orientation_matrices("legacy")
    np.testing.assert_array_equal(legacy[0], np.eye(3))
    for k, rot in ((1, (0, 90, 0)), (2, (90, 0, 0))):
        rotator = hp.Rotator(rot=rot, eulertype="ZYZ")
        np.testing.assert_allclose(legacy[k], rotator.mat, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("k", "rot"), [(1, (0, 90, 0)), (2, (90, 0, 0))])
def test_legacy_rotator_rotate_alm_agrees(rng: np.random.Generator, k: int, rot: tuple) -> None:
    """``Rotator(rot, eulertype="ZYZ").rotate_alm`` equals ``rotate_alm`` by the legacy matrix."""
    alm = _random_alm(rng, 1)[0]
    expected = hp.Rotator(rot=rot, eulertype="ZYZ").rotate_alm(alm)
    got = rotate_alm(alm[None], orientation_matrices("legacy")[k])[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_legacy_third_orientation_is_a_quarter_turn_about_z() -> None:
    """The third legacy orientation is a 90 degree turn about z (it only relabels faces 4..7)."""
    mat = orientation_matrices("legacy")[2]
    np.testing.assert_allclose(mat, _rz(-math.pi / 2), atol=1e-15)
