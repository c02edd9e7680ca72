"""What every kappa source is: the settings it is built from and the behaviour it owns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from lensing_core._types import FloatArray
from lensing_core.sims.catalog import SimCatalog, parse_suite


@dataclass(frozen=True)
class SourceSettings:
    """
    The settings a source is built from.

    :meth:`lensing_core.config.PlatformSettings.from_env` reads them from the ``LENSING_*``
    variables named below.

    Attributes
    ----------
    name
        The source, a key of :data:`lensing_core.sims.sources.SOURCES` (``LENSING_SOURCE``).
    suite
        ``full``, ``demo`` or ids like ``1-20,109`` (``LENSING_SUITE``), see
        :func:`~lensing_core.sims.catalog.parse_suite`.
    nside
        Resolution of generated or ray-traced maps (``LENSING_NSIDE``).
    kappa_dir
        Folder of ``sim00001/kappa_maps.npz`` files (``LENSING_KAPPA_DIR``).
    catalog_csv
        Parameter table in the Gower Street format (``LENSING_CATALOG_CSV``).
    sims_dir
        Folder of Gower Street simulation directories (``LENSING_SIMS_DIR``).
    nz_fits
        DES 2pt FITS file with the ``NZ_SOURCE`` n(z) (``LENSING_NZ_FITS``).
    synthetic_shift
        Lognormal shift recipe of the synthetic source (``LENSING_SYNTHETIC_SHIFT``), one of
        :data:`lensing_core.sims.synthetic.SHIFT_CHOICES`.
    fiducial_realizations
        Realizations of the fiducial per fiducial point (``LENSING_FIDUCIAL_REALIZATIONS``,
        see :func:`lensing_core.sims.catalog.fiducial_realizations`); None: the suite's
        default (:func:`~lensing_core.sims.catalog.default_fiducial_realizations`). Only a
        source that makes its maps (``synthetic``) can have more than one.
    """

    name: str = "synthetic"
    suite: str = "full"
    nside: int = 1024
    kappa_dir: Path | None = None
    catalog_csv: Path | None = None
    sims_dir: Path | None = None
    nz_fits: Path | None = None
    synthetic_shift: str = "hilbert2011_scaled"
    fiducial_realizations: int | None = None


def select_suite(base: SimCatalog, suite: str) -> SimCatalog:
    """
    The sims of *suite* in *base*.

    Raises
    ------
    ValueError
        *suite* names sims that *base* does not have (the message lists some).
    """
    wanted = parse_suite(suite)
    if wanted is None:
        return base
    absent = [i for i in wanted if i not in base]
    if absent:
        msg = f"LENSING_SUITE={suite!r}: sims {absent[:10]} are not in {base.name}"
        raise ValueError(msg)
    return base.subset(wanted)


class KappaSource(ABC):
    """
    Where the 4 tomographic convergence maps of a simulation come from.

    A source is built from :class:`SourceSettings` by :meth:`from_settings` and owns
    everything that depends on where maps come from: the sims it holds (:meth:`discover`),
    their parameters (:attr:`catalog`), the maps (:meth:`load`), the files they are made of
    (:meth:`input_files`, which version them) and the n(z) the maps were made for
    (:meth:`nz`). Subclasses are frozen dataclasses holding their catalog and options.

    Attributes
    ----------
    name
        The registry name (``LENSING_SOURCE``).
    catalog
        Parameters per sim of the configured suite.
    """

    name: ClassVar[str]
    catalog: SimCatalog
    #: Whether the source can make new realizations of the fiducial (it draws its maps).
    makes_fiducial_realizations: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> KappaSource:
        """The source over the configured suite (reads its parameter table or folders now)."""
        k = settings.fiducial_realizations
        if k not in (None, 1) and not cls.makes_fiducial_realizations:
            msg = (
                f"LENSING_FIDUCIAL_REALIZATIONS={k}: the {cls.name} source holds one "
                "realization of the fiducial (sim 109) and cannot make more; leave it unset"
            )
            raise ValueError(msg)
        cls.check_settings(settings)
        return cls.with_catalog(settings, select_suite(cls.base_catalog(settings), settings.suite))

    @classmethod  # noqa: B027 (an optional hook: nothing to check by default)
    def check_settings(cls, settings: SourceSettings) -> None:
        """
        Refuse settings this source cannot work with, naming the variable to set.

        Called when the settings are read, before anything is built.
        """

    @classmethod
    @abstractmethod
    def base_catalog(cls, settings: SourceSettings) -> SimCatalog:
        """Every sim the source can have, before the suite selects some."""

    @classmethod
    @abstractmethod
    def with_catalog(cls, settings: SourceSettings, catalog: SimCatalog) -> KappaSource:
        """The source over *catalog*, with its options from *settings*."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Source name and settings, for metadata (``source`` and ``catalog`` keys at least)."""

    @abstractmethod
    def load(self, sim_id: int) -> tuple[FloatArray, dict[str, Any]]:
        """
        The maps of one sim and a provenance record.

        Returns
        -------
            Maps ``(4, npix)``, RING ordering, one nside; and a JSON-ready record, with
            :meth:`band_limit` as ``band_limit``.

        Raises
        ------
        lensing_core.io.InputMissingError
            An input file of the sim is missing (the message names it).
        ValueError
            An input is corrupt or invalid (the message names the sim and the file).
        """

    def band_limit(self) -> int | None:
        """
        The largest multipole the maps hold signal at, or ``None`` if not known.

        ``None`` (the default) means the maps are taken as full resolution: signal up to
        ``3 nside - 1``. :meth:`load` records it as ``band_limit`` in its provenance, and
        tiles at a larger lmax are refused (:func:`lensing_core.products.check_band_limit`).
        """
        return None

    def discover(self) -> list[int]:
        """The sims the source holds now, sorted (the catalog's, unless overridden)."""
        return sorted(self.catalog.sim_ids)

    def input_files(self, sim_id: int) -> list[Path]:
        """
        The files whose content makes up the inputs of *sim_id*, sorted (none by default).

        Raises
        ------
        FileNotFoundError
            An input of the sim is missing (the message names it).
        """
        return []

    def nz(self) -> tuple[FloatArray, FloatArray]:
        """
        The source n(z) the maps were made for: ``(z, n)`` with ``n`` of shape ``(4, n_z)``.

        The DES-Y3-like stand-in of :func:`lensing_core.sims.theory.des_y3_like_nz` unless
        overridden.
        """
        from lensing_core.sims.theory import des_y3_like_nz

        return des_y3_like_nz()

    def how_to_add(self, sim_id: int) -> str:
        """What a user does so that this source holds *sim_id* (for error messages)."""
        return f"set LENSING_SUITE to a suite of the {self.name} source that includes {sim_id}"

    def suite_text(self) -> str:
        """A short description of the sims held, e.g. ``"791 sims, 1..791"``."""
        ids = self.catalog.sim_ids
        return f"{len(ids)} sims, {ids[0]}..{ids[-1]}" if ids else "no sims"
