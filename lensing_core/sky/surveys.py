"""Source-galaxy survey specifications for shape noise.

Each survey gives, per tomographic bin, the effective source density (arcmin^-2) and the shape
noise per ellipticity component; its ``name`` is the noise level it defines.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Survey:
    """
    Effective source density and shape noise per tomographic bin.

    Attributes
    ----------
    name
        Short name, used as the noise-level name.
    n_eff_arcmin2
        Effective number density per bin, in arcmin^-2.
    sigma_e
        Shape noise per ellipticity *component*, per bin (dimensionless).
    reference
        Where the numbers come from.
    """

    name: str
    n_eff_arcmin2: tuple[float, ...]
    sigma_e: tuple[float, ...]
    reference: str


#: Dark Energy Survey Year 3 shape catalogue, 4 tomographic bins.
DES_Y3 = Survey(
    name="des_y3",
    n_eff_arcmin2=(1.476, 1.479, 1.484, 1.461),
    sigma_e=(0.243, 0.262, 0.259, 0.301),
    reference="Amon et al. 2022 (DES Y3 cosmic shear), Table 1; Gatti et al. 2021",
)

#: Rubin LSST ten-year forecast, 4 equal bins.
LSST_Y10 = Survey(
    name="lsst_y10",
    n_eff_arcmin2=(6.75, 6.75, 6.75, 6.75),
    sigma_e=(0.26, 0.26, 0.26, 0.26),
    reference="LSST DESC Science Requirements Document (2018): n_eff 27 arcmin^-2, sigma_e 0.26",
)

#: Noise-level name -> survey.
SURVEYS: dict[str, Survey] = {s.name: s for s in (DES_Y3, LSST_Y10)}
