"""Scrambled Sobol' points in numpy, the same numbers as ``scipy.stats.qmc.Sobol``.

The synthetic catalog (:func:`lensing_core.sims.catalog.synthetic_catalog`) is built when the
code location loads, so it must not import scipy (``scipy.stats`` alone takes most of a
second). :func:`scrambled_sobol` reproduces scipy's sampler bit for bit: Joe and Kuo's
direction numbers, a linear matrix scramble and a digital shift drawn from the generator in
scipy's order, and the points in Gray-code order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Bits of each coordinate, as scipy's default (``bits=30``): points are multiples of 2**-30.
SOBOL_BITS = 30

# Joe & Kuo's direction numbers (new-joe-kuo-6.21201, as scipy ships them) of the first
# dimensions: the primitive polynomial (its degree is its bit length minus one) and the initial
# direction numbers m_1..m_degree. Dimension 1 is van der Corput's sequence.
_POLY = (1, 3, 7, 11, 13, 19, 25, 37, 41, 47)
_VINIT = (
    (),
    (1,),
    (1, 3),
    (1, 3, 1),
    (1, 1, 1),
    (1, 1, 3, 3),
    (1, 3, 5, 13),
    (1, 1, 5, 5, 17),
    (1, 1, 5, 5, 5),
    (1, 1, 7, 11, 19),
)
#: The most dimensions :func:`scrambled_sobol` has direction numbers for.
SOBOL_MAX_DIM = len(_POLY)


def _direction_numbers(d: int) -> npt.NDArray[np.int64]:
    """Direction numbers ``v[dim, j]`` (integers of :data:`SOBOL_BITS` bits), shape ``(d, bits)``.

    Notes
    -----
    Bratley & Fox (1988), Joe & Kuo (2008): ``m_j = 2 a_1 m_{j-1} ^ ... ^ 2^{s-1} a_{s-1}
    m_{j-s+1} ^ 2^s m_{j-s} ^ m_{j-s}`` for a polynomial of degree ``s`` and coefficients
    ``a``; ``v_j = m_j 2^(bits - 1 - j)``.
    """
    v = np.zeros((d, SOBOL_BITS), dtype=np.int64)
    v[0] = 1
    for dim in range(1, d):
        poly = _POLY[dim]
        degree = poly.bit_length() - 1
        m = list(_VINIT[dim])
        for j in range(degree, SOBOL_BITS):
            new = m[j - degree] ^ (m[j - degree] << degree)
            for k in range(1, degree):  # the coefficient a_k is bit degree - k of the polynomial
                if (poly >> (degree - k)) & 1:
                    new ^= m[j - k] << k
            m.append(new)
        v[dim] = m
    return v << np.arange(SOBOL_BITS - 1, -1, -1)


def scrambled_sobol(n: int, d: int, *, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """
    The first *n* points of a scrambled Sobol' sequence in ``[0, 1)^d``.

    Parameters
    ----------
    n
        Number of points (a power of 2 keeps the balance properties of the sequence).
    d
        Dimensions, at most :data:`SOBOL_MAX_DIM`.
    rng
        Draws the scramble: ``d * bits`` bits of shift, then ``d`` matrices of ``bits x bits``.

    Returns
    -------
        Points, shape ``(n, d)``: ``scipy.stats.qmc.Sobol(d, rng=g).random(n)`` where *rng*
        is the generator that scipy's sampler spawns from ``g`` (``g.spawn(1)[0]``).

    Notes
    -----
    Linear matrix scramble and digital shift (Matousek 1998; Owen 2003): the direction number
    ``v`` of each dimension becomes ``L v`` over GF(2), with ``L`` a random unit lower
    triangular matrix acting on the bits from the most significant down; point ``k`` is the
    shift XOR the scrambled direction numbers of the bits set in the Gray code ``k ^ (k >> 1)``.
    """
    if not 1 <= d <= SOBOL_MAX_DIM:
        msg = f"Sobol' dimensions must be in [1, {SOBOL_MAX_DIM}], got {d}"
        raise ValueError(msg)
    if not 0 <= n <= 1 << SOBOL_BITS:
        msg = f"the number of Sobol' points must be in [0, 2**{SOBOL_BITS}], got {n}"
        raise ValueError(msg)
    bits = SOBOL_BITS
    weights = np.int64(1) << np.arange(bits, dtype=np.int64)
    # the draws, in scipy's order and dtype (a dtype changes how integers are drawn)
    shift = rng.integers(2, size=(d, bits), dtype=np.uint32).astype(np.int64) @ weights
    ltm = np.tril(rng.integers(2, size=(d, bits, bits), dtype=np.uint32)).astype(np.int64)
    ltm[:, np.arange(bits), np.arange(bits)] = 1
    # bits of each direction number from the most significant: (d, bits, bits), [dim, j, i]
    msb_first = np.arange(bits - 1, -1, -1)
    v_bits = (_direction_numbers(d)[:, :, None] >> msb_first) & 1
    scrambled_bits = np.einsum("dpi,dji->djp", ltm, v_bits) % 2  # (d, bits, bits), [dim, j, p]
    v = (scrambled_bits << msb_first).sum(axis=2)  # (d, bits)
    k = np.arange(n, dtype=np.int64)
    gray = k ^ (k >> 1)
    quasi = np.broadcast_to(shift, (n, d)).copy()  # (n, d)
    for j in range(max(n - 1, 0).bit_length()):
        quasi[(gray >> j) & 1 == 1] ^= v[:, j]
    return quasi.astype(np.float64) * (1.0 / 2**bits)
