"""Platform settings: every ``LENSING_*`` variable, read in one place, once.

:meth:`PlatformSettings.from_env` reads the environment (the Dagster definitions call it once
when they load); everything else receives the settings, or the part of them it needs, as
frozen dataclasses. The variables:

==================================  =============================================================
``LENSING_DATA_ROOT``               data root (default: ``data/`` in the project checkout)
``LENSING_SOURCE``                  a registered source: ``synthetic`` (default), ``kappa_npz``,
                                    ``gower_street`` (:data:`lensing_core.sims.sources.SOURCES`)
``LENSING_SUITE``                   ``full`` (default), ``demo`` (sims 101-164) or ids ``1-20,109``
``LENSING_NSIDE``                   nside of synthetic and ray-traced maps (default 1024)
``LENSING_KAPPA_DIR``               ``kappa_npz``: directory holding ``sim00001/kappa_maps.npz``
``LENSING_SIMS_DIR``                ``gower_street``: directory holding ``sim00001/`` shell folders
``LENSING_CATALOG_CSV``             parameter table in the ``gower_street_runs.csv`` format
                                    (required by ``gower_street``, optional otherwise)
``LENSING_NZ_FITS``                 ``gower_street``: DES 2pt FITS file with the ``NZ_SOURCE`` n(z)
``LENSING_SYNTHETIC_SHIFT``         ``synthetic``: lognormal shift recipe, ``hilbert2011_scaled``
                                    (default), ``hilbert2011`` or ``empty_beam``
                                    (:func:`lensing_core.sims.synthetic.lognormal_shifts`)
``LENSING_FIDUCIAL_REALIZATIONS``   ``synthetic``: realizations of the fiducial at each of its
                                    two points (default 4 for ``demo``, 16 for ``full``, 1 for a
                                    list of ids; see
                                    :func:`lensing_core.sims.catalog.fiducial_realizations`)
``LENSING_TILE_SCHEME``             ``belts`` (default) or ``legacy``
``LENSING_NOISE_CONVENTION``        ``per_component`` (default) or ``legacy``
``LENSING_NTHREADS``                threads of the harmonic transforms (default: every core)
``LENSING_NOISE_REALIZATIONS``      noise realisations per (sim, noise level) in the tiles
                                    (default 4; 1 is the earlier single noise map)
``LENSING_SPLIT``                   ``sim`` (default: whole sims per training, validation and
                                    test set) or ``tile`` (the earlier tile-level 70/25/5 split)
``LENSING_TRAINING_PRESET``         compressor settings: ``full`` (default, EfficientNetV2-S) or
                                    ``cpu_demo`` (``test_efficientnet``, minutes on a CPU)
``LENSING_COMPRESSOR_LOSS``         what the compressor is trained on: ``mse`` (default, regress
                                    the parameters) or ``vmim`` (a Gaussian q(theta | t) trained
                                    jointly, variational mutual-information maximisation)
``LENSING_ACCELERATOR``             where models train: ``auto`` (default), ``cpu``, ``gpu``
``LENSING_NPE_SEEDS``               NPEs trained per configuration, one per seed (default 3): the
                                    report's FoM is their median, with their scatter
``LENSING_SYMMETRIES``              augmentation of both models: ``face`` (default, the 4 exact
                                    symmetries of a HEALPix face) or ``square`` (the 8 of the
                                    square, the earlier published pipeline's choice)
``LENSING_HF_REPO_ID``              Hub dataset repository to push the revision to (optional; the
                                    token is read from ``HF_TOKEN`` when pushing, never stored)
``LENSING_AUTOMATION``              ``on`` (default) or ``off``: whether the sensors and the
                                    schedules start running with the daemon
``LENSING_BACKFILL_CRON``           when the fill-missing schedules run (default ``0 2 * * *``)
``LENSING_KAPPA_PER_RUN``           kappa-map partitions (sims) per run of a backfill (default 16)
``LENSING_TILES_PER_RUN``           tile partitions (sim x lmax) per run of a backfill (default
                                    50: the five lmax of 10 sims)
``LENSING_DASK_*``, ``LENSING_SLURM_*``
                                    the Dask cluster of the kappa and tile batches: on this
                                    machine (default), at a scheduler, or on SLURM (the table of
                                    :mod:`lensing_core.cluster`)
==================================  =============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from lensing_core.cluster import ClusterSettings
from lensing_core.dataset.hf import HubTarget
from lensing_core.dataset.splits import SPLIT_KINDS, SplitSpec
from lensing_core.inference.config import (
    ACCELERATORS,
    COMPRESSOR_LOSSES,
    COMPRESSOR_PRESETS,
    SYMMETRY_GROUPS,
    TrainingSettings,
)
from lensing_core.sims.catalog import parse_suite
from lensing_core.sims.sources import KappaSource, SourceSettings, source_class
from lensing_core.sims.synthetic import SHIFT_CHOICES
from lensing_core.sky.noise import NOISE_CONVENTIONS
from lensing_core.sky.rotations import SCHEMES
from lensing_core.sky.tiles import TilingOptions


def default_data_root() -> Path:
    """``data/`` in the project checkout (or in the working directory for an installed copy)."""
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return base / "data"


@dataclass(frozen=True)
class AutomationSettings:
    """
    Whether the sensors and schedules start running, when the backfill runs, how many per run.

    Attributes
    ----------
    enabled
        ``LENSING_AUTOMATION=on``: the sensors and schedules start running with the daemon.
    backfill_cron
        Cron schedule of the nightly fill-missing schedules (``LENSING_BACKFILL_CRON``).
    kappa_per_run, tiles_per_run
        Partitions of ``kappa_maps`` (sims) and of ``tiles`` (sim x lmax) per run of a
        backfill, an automation request or a fill-missing schedule (``LENSING_KAPPA_PER_RUN``,
        default 16; ``LENSING_TILES_PER_RUN``, default 50: the five lmax of 10 sims). 1 is one
        run per partition.
    """

    enabled: bool = True
    backfill_cron: str = "0 2 * * *"
    kappa_per_run: int = 16
    tiles_per_run: int = 50

    def __post_init__(self) -> None:
        for name, value in (
            ("LENSING_KAPPA_PER_RUN", self.kappa_per_run),
            ("LENSING_TILES_PER_RUN", self.tiles_per_run),
        ):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")


@dataclass(frozen=True)
class PlatformSettings:
    """
    Settings of one deployment of the platform.

    Attributes
    ----------
    data_root
        Where every artifact is written.
    source
        Which kappa source, over which suite, with its folders and files.
    tiling
        How tiles are made.
    training
        How models train.
    hub
        Where the dataset revision is pushed (nowhere by default).
    automation
        Sensors and schedules.
    cluster
        The Dask cluster that batches of kappa maps and tiles run on.
    """

    data_root: Path
    source: SourceSettings = field(default_factory=SourceSettings)
    tiling: TilingOptions = field(default_factory=TilingOptions)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    hub: HubTarget = field(default_factory=HubTarget)
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    def __post_init__(self) -> None:
        _check_choice("LENSING_TILE_SCHEME", self.tiling.scheme, SCHEMES)
        _check_choice("LENSING_NOISE_CONVENTION", self.tiling.noise_convention, NOISE_CONVENTIONS)
        _check_choice("LENSING_TRAINING_PRESET", self.training.preset, tuple(COMPRESSOR_PRESETS))
        _check_choice("LENSING_ACCELERATOR", self.training.accelerator, ACCELERATORS)
        _check_choice("LENSING_SYNTHETIC_SHIFT", self.source.synthetic_shift, SHIFT_CHOICES)
        source_class(self.source.name).check_settings(self.source)
        parse_suite(self.source.suite)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """
        Settings from the ``LENSING_*`` variables of *environ* (this process's if not given).

        Raises
        ------
        ValueError
            A variable has a value that is not allowed (the message names it and what is).
        """
        env = os.environ if environ is None else environ

        def text(name: str, default: str) -> str:
            return env.get(name, default).strip()

        def path(name: str) -> Path | None:
            value = text(name, "")
            return Path(value).expanduser().resolve() if value else None

        automation = text("LENSING_AUTOMATION", "on").lower()
        symmetries = text("LENSING_SYMMETRIES", "face").lower()
        _check_choice("LENSING_SYMMETRIES", symmetries, tuple(SYMMETRY_GROUPS))
        _check_choice("LENSING_AUTOMATION", automation, ("on", "off"))
        nthreads = _integer(env, "LENSING_NTHREADS", None)
        split = text("LENSING_SPLIT", "sim").lower()
        _check_choice("LENSING_SPLIT", split, SPLIT_KINDS)
        loss = text("LENSING_COMPRESSOR_LOSS", "mse").lower()
        _check_choice("LENSING_COMPRESSOR_LOSS", loss, COMPRESSOR_LOSSES)
        training = TrainingSettings.from_preset(
            _preset(text("LENSING_TRAINING_PRESET", "full")),
            accelerator=text("LENSING_ACCELERATOR", "auto"),
            symmetries=symmetries,
            loss=loss,
        )
        return cls(
            data_root=path("LENSING_DATA_ROOT") or default_data_root(),
            source=SourceSettings(
                name=text("LENSING_SOURCE", "synthetic"),
                suite=text("LENSING_SUITE", "full"),
                nside=_integer(env, "LENSING_NSIDE", 1024) or 1024,
                kappa_dir=path("LENSING_KAPPA_DIR"),
                catalog_csv=path("LENSING_CATALOG_CSV"),
                sims_dir=path("LENSING_SIMS_DIR"),
                nz_fits=path("LENSING_NZ_FITS"),
                synthetic_shift=text("LENSING_SYNTHETIC_SHIFT", "hilbert2011_scaled"),
                fiducial_realizations=_integer(env, "LENSING_FIDUCIAL_REALIZATIONS", None),
            ),
            tiling=TilingOptions(
                scheme=text("LENSING_TILE_SCHEME", "belts"),
                noise_convention=text("LENSING_NOISE_CONVENTION", "per_component"),
                nthreads=nthreads,
                noise_realizations=_integer(env, "LENSING_NOISE_REALIZATIONS", 4) or 4,
            ),
            training=replace(
                training,
                split=SplitSpec(kind=split),
                npe=replace(training.npe, n_seeds=_integer(env, "LENSING_NPE_SEEDS", 3) or 3),
            ),
            hub=HubTarget(repo_id=text("LENSING_HF_REPO_ID", "") or None),
            automation=AutomationSettings(
                enabled=automation == "on",
                backfill_cron=text("LENSING_BACKFILL_CRON", "0 2 * * *"),
                kappa_per_run=_integer(env, "LENSING_KAPPA_PER_RUN", 16) or 16,
                tiles_per_run=_integer(env, "LENSING_TILES_PER_RUN", 50) or 50,
            ),
            cluster=ClusterSettings.from_env(env),
        )

    def kappa_source(self) -> KappaSource:
        """
        The configured kappa source over the configured suite.

        Built anew at each call: its parameter table and folders are read now, so sims
        added to the source since the last call are in it.
        """
        return source_class(self.source.name).from_settings(self.source)


def _check_choice(variable: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        msg = f"{variable}={value!r} is not one of {allowed}"
        raise ValueError(msg)


def _preset(name: str) -> str:
    _check_choice("LENSING_TRAINING_PRESET", name, tuple(COMPRESSOR_PRESETS))
    return name


def _integer(env: Mapping[str, str], variable: str, default: int | None) -> int | None:
    value = env.get(variable, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        msg = f"{variable}={value!r} is not an integer"
        raise ValueError(msg) from None
    if number < 1:
        msg = f"{variable}={value!r} must be at least 1"
        raise ValueError(msg)
    return number
