"""Orientation schemes for tiling and harmonic-space rotation of alm.

A rotation is a 3x3 *active* rotation matrix ``R``: rotating a map by ``R`` gives the map
``m'(n) = m(R^T n)``, so the sky at direction ``p`` moves to ``R p``.
Rotations of alm are done in harmonic space by ``ducc0.sht.rotate_alm``, which takes ZYZ Euler
angles ``(psi, theta, phi)`` in healpy's argument order.
"""

from __future__ import annotations

import math

import numpy as np

from lensing_core._types import ComplexArray, FloatArray
from lensing_core.sky.harmonics import default_nthreads, lmax_of

#: Names of the orientation schemes; ``"belts"`` is the default.
SCHEMES: tuple[str, ...] = ("belts", "legacy")


def axis_angle_matrix(axis: tuple[float, float, float], angle_rad: float) -> FloatArray:
    """
    Active rotation matrix about *axis* by *angle_rad* (right-handed, Rodrigues' formula).

    Examples
    --------
    >>> np.round(axis_angle_matrix((0, 0, 1), np.pi / 2) @ [1, 0, 0], 12).tolist()
    [0.0, 1.0, 0.0]
    """
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * cross + (1.0 - math.cos(angle_rad)) * cross @ cross


def _legacy_matrices() -> FloatArray:
    # The published dataset called healpy.Rotator(rot=..., eulertype="ZYZ"); healpy has no
    # ZYZ type and silently uses ZYX, and Rotator.rotate_alm applies Rotator.mat. These are
    # the matrices it produced (checked against healpy in the tests).
    turn_about_y = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # rot=(0, 90, 0)
    turn_about_z = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rot=(90, 0, 0)
    return np.stack([np.eye(3), turn_about_y, turn_about_z])


def orientation_matrices(scheme: str = "belts") -> FloatArray:
    """
    The three orientations of a tiling scheme.

    Parameters
    ----------
    scheme
        ``"belts"``: identity and 90-degree turns about ``(1, 1, 0)/sqrt 2`` and
        ``(1, -1, 0)/sqrt 2``; each turn brings one ring of four polar base faces onto the
        equator, so the 12 equatorial tiles cover 96% of the sky, with at most 2.5% overlap
        between two tiles (see :func:`~lensing_core.sky.tiles.sky_coverage`).
        ``"legacy"``: the orientations of the earlier published dataset (identity, a 90-degree
        turn about y, a 90-degree turn about z); kept for comparison only, its third
        orientation merely relabels the equatorial faces: 4 of its 12 tiles duplicate others
        and the 12 cover 51% of the sky.

    Returns
    -------
        Active rotation matrices, shape ``(3, 3, 3)``, indexed ``[orientation, row, col]``.

    Raises
    ------
    ValueError
        For an unknown scheme.
    """
    if scheme == "belts":
        quarter = math.pi / 2
        return np.stack(
            [
                np.eye(3),
                axis_angle_matrix((1.0, 1.0, 0.0), quarter),
                axis_angle_matrix((1.0, -1.0, 0.0), quarter),
            ]
        )
    if scheme == "legacy":
        return _legacy_matrices()
    msg = f"unknown orientation scheme {scheme!r}; expected one of {SCHEMES}"
    raise ValueError(msg)


def zyz_euler_from_matrix(matrix: FloatArray) -> tuple[float, float, float]:
    """
    ZYZ Euler angles of an active rotation, ``R = Rz(phi) Ry(theta) Rz(psi)``.

    Returns
    -------
        ``(psi, theta, phi)`` in radians, the argument order of ``ducc0.sht.rotate_alm``
        and ``healpy.rotate_alm``.
    """
    r = np.asarray(matrix, dtype=np.float64)
    theta = math.atan2(math.hypot(r[2, 0], r[2, 1]), r[2, 2])  # exact near 0 and pi
    if abs(math.sin(theta)) > 1e-12:
        return math.atan2(r[2, 1], -r[2, 0]), theta, math.atan2(r[1, 2], r[0, 2])
    # Gimbal lock: only psi + phi (theta = 0) or phi - psi (theta = pi) is defined; set psi = 0.
    if r[2, 2] > 0:
        return 0.0, 0.0, math.atan2(r[1, 0], r[0, 0])
    return 0.0, math.pi, math.atan2(-r[1, 0], -r[0, 0])


def rotate_alm(
    alm: ComplexArray, matrix: FloatArray, *, nthreads: int | None = None
) -> ComplexArray:
    """
    Rotate alm by an active rotation matrix, in harmonic space.

    Parameters
    ----------
    alm
        Coefficients, shape ``(n_maps, n_alm(lmax))``, complex128 or complex64.
    matrix
        Active rotation, shape ``(3, 3)``.
    nthreads
        ducc0 threads; :func:`~lensing_core.sky.harmonics.default_nthreads` if not given.

    Returns
    -------
        Rotated coefficients, same shape; a new array (the identity returns a copy).
    """
    import ducc0  # heavy: imported where used, so loading the code location stays light

    if np.allclose(matrix, np.eye(3), atol=1e-15):
        return alm.copy()
    psi, theta, phi = zyz_euler_from_matrix(matrix)
    dtype = np.complex64 if alm.dtype == np.complex64 else np.complex128
    return ducc0.sht.rotate_alm(
        np.ascontiguousarray(alm, dtype=dtype),
        lmax_of(alm.shape[-1]),
        psi,
        theta,
        phi,
        nthreads or default_nthreads(),
    )
