"""The configurations and columns of the training dataset: names, value types, tile shape.

Plain names and numbers, without pyarrow or ``datasets``, so that the code location can name
them when it loads; :mod:`lensing_core.dataset.schema` re-exports them beside the Arrow schema,
the kappa encoding and the content hash.
"""

from __future__ import annotations

from collections.abc import Mapping

from lensing_core.sims.catalog import PARAM_KEYS
from lensing_core.sky.noise import N_BINS, NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE, N_ORIENTATIONS, N_TILES
from lensing_core.storage import config_dir_name

N_FACES = N_TILES // N_ORIENTATIONS  # tiles per orientation: equatorial base faces 4..7

CONFIG_NAMES: tuple[str, ...] = tuple(
    config_dir_name(lmax, noise) for lmax in sorted(LMAX_TO_NSIDE) for noise in NOISE_LEVELS
)

# Every catalog parameter but Omega_bh2 (Omega_b and h carry it), in the catalog's order.
PARAM_COLUMNS: tuple[str, ...] = tuple(k for k in PARAM_KEYS if k != "Omega_bh2")
ID_COLUMNS: tuple[str, ...] = ("sim_id", "noise_realization", "orientation_id", "tile_id", "lmax")
KAPPA_COLUMN = "kappa"
COLUMNS: tuple[str, ...] = (KAPPA_COLUMN, *ID_COLUMNS, "noise_level", *PARAM_COLUMNS)

COLUMN_DESCRIPTIONS: Mapping[str, str] = {
    "kappa": "convergence tile [tomographic bin, x, y]: one HEALPix base face in its NESTED "
    "(x, y) pixel layout",
    "sim_id": "simulation id in the parameter catalog",
    "noise_realization": "noise realisation r = 0 .. R-1 of this (sim, noise level), seeded "
    "from (sim, noise level, r); the same signal in every realisation; always 0 for noiseless",
    "orientation_id": "orientation of the sphere, 0..2 (see the orientation scheme)",
    "tile_id": "equatorial base face 4..7 of the rotated sphere, as 0..3",
    "lmax": "band limit of the harmonic processing",
    "noise_level": "shape-noise level: noiseless, des_y3 or lsst_y10",
    "Omega_m": "total matter density parameter",
    "sigma_8": "rms linear matter fluctuation in 8 Mpc/h spheres",
    "S8": "sigma_8 sqrt(Omega_m / 0.3)",
    "w": "dark-energy equation of state",
    "h": "reduced Hubble constant, H0 / (100 km/s/Mpc)",
    "n_s": "scalar spectral index",
    "Omega_b": "baryon density parameter",
    "m_nu": "sum of neutrino masses in eV",
}

CONTENT_HASH_VERSION = "lensing-tile-rows/v2"  # v2: the noise_realization id

#: Value type of every column (``kappa``: of its elements; its shape is :func:`tile_shape`).
COLUMN_DTYPES: Mapping[str, str] = {
    "kappa": "float32",
    **dict.fromkeys(ID_COLUMNS, "int32"),
    "noise_level": "string",
    **dict.fromkeys(PARAM_COLUMNS, "float64"),
}


def config_name(lmax: int, noise_level: str) -> str:
    """
    Name of the configuration of one (lmax, noise level).

    Raises
    ------
    ValueError
        For an lmax not in :data:`~lensing_core.sky.tiles.LMAX_TO_NSIDE` or an unknown noise
        level.

    Examples
    --------
    >>> config_name(600, "des_y3")
    'lmax_600_des_y3'
    """
    if lmax not in LMAX_TO_NSIDE:
        msg = f"unknown lmax {lmax!r}; expected one of {sorted(LMAX_TO_NSIDE)}"
        raise ValueError(msg)
    if noise_level not in NOISE_LEVELS:
        msg = f"unknown noise level {noise_level!r}; expected one of {NOISE_LEVELS}"
        raise ValueError(msg)
    return config_dir_name(lmax, noise_level)


def parse_config_name(name: str) -> tuple[int, str]:
    """
    ``(lmax, noise_level)`` of a configuration name; the inverse of :func:`config_name`.

    Examples
    --------
    >>> parse_config_name("lmax_200_lsst_y10")
    (200, 'lsst_y10')
    """
    prefix, _, rest = name.partition("_")
    lmax_text, _, noise = rest.partition("_")
    if prefix != "lmax" or not lmax_text.isdigit() or name not in CONFIG_NAMES:
        msg = f"unknown configuration {name!r}; expected one of {CONFIG_NAMES}"
        raise ValueError(msg)
    return int(lmax_text), noise


def tile_shape(lmax: int) -> tuple[int, int, int]:
    """Shape ``(4, n, n)`` of ``kappa`` at band limit *lmax* (``n = LMAX_TO_NSIDE[lmax]``)."""
    if lmax not in LMAX_TO_NSIDE:
        msg = f"unknown lmax {lmax!r}; expected one of {sorted(LMAX_TO_NSIDE)}"
        raise ValueError(msg)
    n = LMAX_TO_NSIDE[lmax]
    return (N_BINS, n, n)
