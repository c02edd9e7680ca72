"""Angular unit constants and conversions.

Surveys quote source densities per square arcminute, while noise powers and pixel areas are
in steradians; the names say the unit (``arcmin``, ``arcmin2``, ``rad``, ``sr``).
"""

from __future__ import annotations

import math

#: Arcminutes in one radian.
ARCMIN_PER_RAD = 180.0 * 60.0 / math.pi
#: Square arcminutes in one steradian.
ARCMIN2_PER_SR = ARCMIN_PER_RAD**2


def per_arcmin2_to_per_sr(density_per_arcmin2: float) -> float:
    """
    Convert a surface density from arcmin^-2 to sr^-1.

    Examples
    --------
    >>> round(per_arcmin2_to_per_sr(1.0))
    11818103
    """
    return density_per_arcmin2 * ARCMIN2_PER_SR


def healpix_pixel_area_sr(nside: int) -> float:
    """
    Area of one HEALPix pixel at resolution *nside*, in steradians.

    Examples
    --------
    >>> healpix_pixel_area_sr(1) == 4 * math.pi / 12
    True
    """
    return 4.0 * math.pi / (12 * nside * nside)
