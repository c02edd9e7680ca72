"""Source redshift distributions from files.

The DES Y3 source n(z) is read from a 2pt FITS file when the ``gower_street`` source is given
one (``LENSING_NZ_FITS``). An n(z) is ``(z, n)``: a redshift grid and one row per tomographic
bin, as for the stand-in n(z) of :mod:`lensing_core.sims.theory`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from lensing_core._types import FloatArray

N_BINS = 4


def read_nz_source_fits(path: str | Path) -> tuple[FloatArray, FloatArray]:
    """
    Read the tomographic source n(z) of a DES 2pt FITS file.

    Parameters
    ----------
    path
        FITS file with an ``NZ_SOURCE`` binary table holding columns ``Z_LOW``, ``Z_MID``,
        ``Z_HIGH`` and ``BIN1`` .. ``BIN4`` (the DES Y3 2pt format).

    Returns
    -------
        ``(z, n)``: ``z`` the bin centres ``Z_MID``, shape ``(n_z,)``, and ``n`` shape
        ``(4, n_z)``, each row normalised to unit integral over ``z``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, has no ``NZ_SOURCE`` HDU, lacks a column, or a bin is empty.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"n(z) file {path} does not exist"
        raise FileNotFoundError(msg)
    try:
        with fits.open(path, memmap=False) as hdus:
            names = [hdu.name for hdu in hdus]
            if "NZ_SOURCE" not in names:
                msg = f"n(z) file {path} has no NZ_SOURCE HDU (HDUs: {names})"
                raise ValueError(msg)
            table = hdus["NZ_SOURCE"].data
            columns = ["Z_MID", *(f"BIN{i}" for i in range(1, N_BINS + 1))]
            missing = [c for c in columns if c not in table.columns.names]
            if missing:
                msg = f"n(z) file {path}: NZ_SOURCE lacks the columns {missing}"
                raise ValueError(msg)
            z = np.asarray(table["Z_MID"], dtype=np.float64)
            n = np.stack([np.asarray(table[c], dtype=np.float64) for c in columns[1:]])
    except OSError as err:
        msg = f"n(z) file {path} is not a readable FITS file ({err})"
        raise ValueError(msg) from None
    norms = np.asarray(np.trapezoid(n, z, axis=1))
    if not np.all(np.isfinite(n)) or np.any(norms <= 0):
        empty = np.flatnonzero(~(norms > 0)).tolist()
        msg = f"n(z) file {path}: non-finite n(z), or empty bins {empty}"
        raise ValueError(msg)
    return z, n / norms[:, None]
