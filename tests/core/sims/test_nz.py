"""The DES 2pt FITS n(z) reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lensing_core.sims.nz import read_nz_source_fits


def _write(path: Path, *, hdu_name: str = "NZ_SOURCE", bins: int = 4) -> Path:
    z_low = np.linspace(0.0, 2.98, 150)
    z_mid = z_low + 0.01
    cols = [
        fits.Column(name="Z_LOW", format="D", array=z_low),
        fits.Column(name="Z_MID", format="D", array=z_mid),
        fits.Column(name="Z_HIGH", format="D", array=z_low + 0.02),
    ]
    for i in range(1, bins + 1):
        cols.append(
            fits.Column(name=f"BIN{i}", format="D", array=np.exp(-((z_mid - 0.25 * i) ** 2) / 0.02))
        )
    table = fits.BinTableHDU.from_columns(cols, name=hdu_name)
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def test_reads_bins_normalised(tmp_path: Path) -> None:
    """Four bins on Z_MID, each of unit integral, means where they were put."""
    z, n = read_nz_source_fits(_write(tmp_path / "2pt.fits"))
    assert n.shape == (4, z.size)
    np.testing.assert_allclose(np.trapezoid(n, z, axis=1), 1.0, rtol=1e-12)
    means = np.trapezoid(n * z, z, axis=1)
    np.testing.assert_allclose(means, [0.25, 0.5, 0.75, 1.0], atol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hdu_name": "NZ_LENS"}, "has no NZ_SOURCE HDU"),
        ({"bins": 3}, r"lacks the columns \['BIN4'\]"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, kwargs: dict, match: str) -> None:
    """No NZ_SOURCE, or a missing bin column: ValueError naming the file."""
    path = _write(tmp_path / "bad.fits", **kwargs)
    with pytest.raises(ValueError, match=match) as info:
        read_nz_source_fits(path)
    assert str(path) in str(info.value)


def test_not_fits_and_missing(tmp_path: Path) -> None:
    """A text file is not FITS; a missing file is FileNotFoundError."""
    text = tmp_path / "nz.txt"
    text.write_text("z n\n0 1\n")
    with pytest.raises(ValueError, match="not a readable FITS"):
        read_nz_source_fits(text)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_nz_source_fits(tmp_path / "absent.fits")
