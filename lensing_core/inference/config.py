"""Configuration of the model training: frozen dataclasses with real defaults.

The settings of the compressor and of the NPE are frozen dataclasses whose defaults are the
real settings; building one from a mapping with an unknown key is an error, so a misspelt
setting fails instead of being ignored. Named presets give the full run (for a GPU) and a
CPU demo, and ``"auto"`` precision resolves to bf16 only on a CUDA device that supports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from lensing_core.dataset.splits import SplitSpec

PRECISIONS: tuple[str, ...] = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true")

#: Training objectives of the compressor (:attr:`CompressorConfig.loss`). ``"mse"``: regress
#: the standardised parameters, so the summaries are estimates of their posterior means.
#: ``"vmim"``: variational mutual information maximisation, the summaries and a Gaussian
#: density ``q(theta | t)`` trained jointly to maximise ``log q(theta | t)``.
COMPRESSOR_LOSSES: tuple[str, ...] = ("mse", "vmim")

#: The groups of pixel-grid symmetries tiles are augmented by, as element names of
#: :data:`lensing_core.inference.compressor.SYMMETRY_ELEMENTS` (operations on the last two
#: axes ``(..., x, y)`` of a tile in the NESTED face layout, see
#: :func:`lensing_core.sky.healpix.face_ring_indices`). ``"face"``: the 4 elements that map an
#: equatorial HEALPix base face (the tiles, faces 4..7) onto itself exactly: the identity, the
#: reflections about its two diagonals (``transpose`` about the south-north diagonal, i.e. the
#: face's central meridian, ``antitranspose`` about the east-west one, i.e. the equator) and
#: the turn by 180 degrees. ``"square"``: the 8 symmetries of the square, the earlier
#: published pipeline's choice; the other 4 (turns by 90 degrees, single-axis flips) swap the
#: face's unequal diagonals (82.8 and 89.3 degrees between corner pixel centres at nside 128)
#: and distort distances by about 8.5%. The order of ``"square"`` is ``4 * flip + k`` for
#: ``rot90(k)`` after an optional ``flip_lr``, the way
#: :func:`lensing_core.inference.compressor.augment_tiles` draws it.
SYMMETRY_GROUPS: Mapping[str, tuple[str, ...]] = {
    "face": ("identity", "transpose", "antitranspose", "rot180"),
    "square": (
        "identity",
        "rot90",
        "rot180",
        "rot270",
        "flip_lr",
        "transpose",
        "flip_ud",
        "antitranspose",
    ),
}


@dataclass(frozen=True, slots=True)
class CompressorConfig:
    """
    One compressor training run.

    Attributes
    ----------
    backbone
        Any timm model name; ``efficientnetv2_s`` is timm's EfficientNetV2-S,
        ``test_efficientnet`` a tiny one for CPU runs and tests. Never pretrained.
    n_summaries
        Outputs of the network's head, the summaries: one per inferred parameter (Omega_m,
        S8).
    head_hidden
        Width of the hidden layer of the head (``Linear -> GELU -> Linear``).
    loss
        Training objective, one of :data:`COMPRESSOR_LOSSES`. ``"mse"`` (default): mean
        squared error of the outputs against the standardised parameters, so the summaries
        are point estimates (posterior means), which can lose information. ``"vmim"``:
        variational mutual information maximisation, the network and a Gaussian density
        head ``q(theta | t)`` (a :class:`lensing_core.inference.npe.GaussianNPE` with a full
        covariance) trained jointly on the mean negative log-likelihood
        ``-log q(theta_norm | t)``; the summaries ``t`` are then not estimates of theta, and
        the point estimates are the head's means. Checkpoints written before this setting
        existed are ``"mse"`` ones.
    vmim_hidden, vmim_layers
        Units per hidden layer and number of hidden layers of the density head's MLP
        (``loss="vmim"`` only; unused by ``"mse"``).
    lr, weight_decay
        AdamW peak learning rate and decoupled weight decay.
    batch_size
        Tiles per optimisation step.
    max_epochs
        Passes over the compressor-train split.
    warmup_epochs
        Linear warmup from ``lr / warmup_steps`` to ``lr`` over this many epochs (fractions
        allowed; converted to whole optimiser steps, at least one when positive).
    lr_decay_every_epochs, lr_decay_gamma
        Step decay: the learning rate is multiplied by ``lr_decay_gamma`` every
        ``lr_decay_every_epochs`` epochs after the warmup.
    grad_clip_norm
        Clip the global gradient norm to this value (0 disables clipping).
    target_noise_std
        Standard deviation of the Gaussian noise added to the standardised targets during
        training, a regulariser against memorising the few distinct parameter points.
    augment_rolls
        Also roll tiles circularly by random offsets. Off by default: face tiles are not
        periodic, so rolls add seams that real tiles never have.
    symmetries
        Group of the random symmetry each training tile is transformed by, a key of
        :data:`SYMMETRY_GROUPS`. ``"face"`` (default): the 4 exact symmetries of a HEALPix
        face, so augmented tiles are tiles the sky could produce. ``"square"``: the 8 of the
        square, the earlier published pipeline's choice (4 of them stretch the face by ~8%),
        kept to reproduce old runs.
    precision
        Lightning precision, or ``"auto"`` (see :func:`resolve_precision`).
    deterministic
        Ask torch for deterministic algorithms (warn, never fail, where an op has none).
    seed
        Seed of the weights, the shuffling and the augmentation.
    num_workers
        DataLoader worker processes; 0 loads in the training process (batches are one
        gather from memory, see :mod:`lensing_core.dataset.loader`).
    """

    backbone: str = "efficientnetv2_s"
    n_summaries: int = 2
    head_hidden: int = 128
    loss: str = "mse"
    vmim_hidden: int = 64
    vmim_layers: int = 2
    lr: float = 5e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 60
    warmup_epochs: float = 2.0
    lr_decay_every_epochs: int = 20
    lr_decay_gamma: float = 0.3
    grad_clip_norm: float = 1.0
    target_noise_std: float = 0.005
    augment_rolls: bool = False
    symmetries: str = "face"
    precision: str = "auto"
    deterministic: bool = True
    seed: int = 42
    num_workers: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.backbone:
            problems.append("backbone must be a timm model name")
        for name in (
            "n_summaries",
            "head_hidden",
            "vmim_hidden",
            "vmim_layers",
            "batch_size",
            "max_epochs",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        for name in ("weight_decay", "warmup_epochs", "grad_clip_norm", "target_noise_std"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_decay_every_epochs < 1:
            problems.append(f"lr_decay_every_epochs must be >= 1, got {self.lr_decay_every_epochs}")
        if not 0 < self.lr_decay_gamma <= 1:
            problems.append(f"lr_decay_gamma must be in (0, 1], got {self.lr_decay_gamma}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.symmetries not in SYMMETRY_GROUPS:
            problems.append(_symmetries_problem(self.symmetries))
        if self.loss not in COMPRESSOR_LOSSES:
            problems.append(f"loss must be one of {COMPRESSOR_LOSSES}, got {self.loss!r}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if problems:
            raise ValueError("invalid CompressorConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CompressorConfig:
        """
        Config from a mapping of field values; missing fields take their defaults.

        Raises
        ------
        ValueError
            A key is not a field (never silently dropped), or a value is out of range.
        """
        return cls(**_checked_fields(cls, values))


def _symmetries_problem(value: str) -> str:
    return f"symmetries must be one of {tuple(SYMMETRY_GROUPS)}, got {value!r}"


def _checked_fields(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """*values* as keyword arguments of dataclass *cls*; an unknown key is an error."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {known}")
    return dict(values)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """
    Lightning precision string for a run.

    Parameters
    ----------
    precision
        A value of :data:`PRECISIONS`; anything but ``"auto"`` is returned unchanged.
    accelerator
        The Lightning accelerator asked for (``"auto"``, ``"cpu"``, ``"gpu"``, ``"cuda"``).

    Returns
    -------
        ``"bf16-mixed"`` when CUDA is available (and allowed by *accelerator*) and the device
        supports bf16, else ``"32-true"``.

    Notes
    -----
    On a CPU, ``"auto"`` means float32. bf16 autocast also runs there, but whether it helps
    depends on the CPU: with bf16 instructions (AVX512-BF16, AMX) it is somewhat faster,
    without them it is converted in software and expected to be slower. Measured
    with :func:`lensing_core.inference.training.fit_compressor`, ``test_efficientnet``,
    128 x 128 x 4 tiles, batch 64, 2 cores with AVX512-BF16 (a shared machine, so +-20%):
    160-205 tiles/s in ``"32-true"``, 210-217 tiles/s in ``"bf16-mixed"``, the same
    validation loss. Ask for ``"bf16-mixed"`` explicitly to use it on such a CPU.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return precision
    if accelerator not in ("auto", "gpu", "cuda"):
        return "32-true"
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


#: Named compressor settings. ``"full"`` is the full-scale run (EfficientNetV2-S, 60 epochs,
#: for a GPU). ``"cpu_demo"`` trains timm's ``test_efficientnet`` for 30 short epochs: on the
#: 64-sim demo suite at lmax 200 (about 530 training tiles of 128 x 128 x 4) it takes about
#: 1.5 minutes on 2 CPU cores and reaches a test R^2 of S8 above 0.9 (``make demo``).
COMPRESSOR_PRESETS: Mapping[str, CompressorConfig] = {
    "full": CompressorConfig(),
    "cpu_demo": CompressorConfig(
        backbone="test_efficientnet",
        batch_size=32,
        max_epochs=30,
        lr=2e-3,
        warmup_epochs=1.0,
        lr_decay_every_epochs=10,
        lr_decay_gamma=0.5,
    ),
}


def compressor_preset(name: str) -> CompressorConfig:
    """
    The settings of a named preset (:data:`COMPRESSOR_PRESETS`).

    Raises
    ------
    ValueError
        *name* is not a preset (the message lists them).
    """
    try:
        return COMPRESSOR_PRESETS[name]
    except KeyError:
        known = sorted(COMPRESSOR_PRESETS)
        raise ValueError(f"unknown compressor preset {name!r}; known: {known}") from None


@dataclass(frozen=True, slots=True)
class NPEConfig:
    """
    Settings of the Gaussian NPE and of its training.

    Parameters
    ----------
    hidden
        Units per hidden layer.
    n_hidden_layers
        Number of hidden layers of the MLP.
    min_scale
        Floor added to the Cholesky diagonal (normalised-theta units): keeps the covariance
        positive definite and the loss finite.
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    batch_size
        Rows per optimisation step (indices handed to ``make_batch``).
    max_epochs
        Upper bound on passes over the training indices.
    patience
        Stop after this many epochs without a validation NLL better than the last progress by
        more than *min_delta*; the state of the lowest validation NLL is kept.
    min_delta
        Improvement of the validation NLL (nats per row) that counts as progress.
    lr_decay_patience, lr_decay_factor
        Multiply the learning rate by *lr_decay_factor* after *lr_decay_patience* epochs
        without progress (so the covariance settles instead of following the step noise).
    seed
        Seed of the generator :func:`fit_npe` creates when the caller gives none; the NPEs of
        a seed spread take ``seed, seed + 1, ...``.
    n_seeds
        NPEs trained per configuration, each from its own seed (``LENSING_NPE_SEEDS``): the
        report gives the median FoM over them and their seed-to-seed scatter beside the
        tile-to-tile one.
    augment_rolls
        Also roll the tiles circularly when augmenting them for the NPE's summaries (as the
        compressor's option of the same name).
    symmetries
        Group of the random symmetries of the tiles augmented for the NPE's summaries, a key
        of :data:`SYMMETRY_GROUPS` (as the compressor's option of the same name): ``"face"``
        (default), the 4 exact symmetries of a HEALPix face; ``"square"``, the 8 of the
        square, the earlier published pipeline's choice.
    """

    hidden: int = 64
    n_hidden_layers: int = 2
    min_scale: float = 1e-3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20
    min_delta: float = 1e-4
    lr_decay_patience: int = 5
    lr_decay_factor: float = 0.5
    seed: int = 42
    n_seeds: int = 3
    augment_rolls: bool = False
    symmetries: str = "face"

    def __post_init__(self) -> None:
        positive = {
            "n_seeds": self.n_seeds,
            "hidden": self.hidden,
            "n_hidden_layers": self.n_hidden_layers,
            "min_scale": self.min_scale,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "lr_decay_patience": self.lr_decay_patience,
        }
        bad = {name: value for name, value in positive.items() if not value > 0}
        if bad:
            msg = f"NPEConfig: these settings must be positive, got {bad}"
            raise ValueError(msg)
        if not 0 < self.lr_decay_factor <= 1:
            msg = f"NPEConfig: lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}"
            raise ValueError(msg)
        if self.weight_decay < 0 or self.min_delta < 0:
            msg = (
                "NPEConfig: weight_decay and min_delta must be >= 0, got "
                f"{self.weight_decay} and {self.min_delta}"
            )
            raise ValueError(msg)
        if self.symmetries not in SYMMETRY_GROUPS:
            raise ValueError(f"NPEConfig: {_symmetries_problem(self.symmetries)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NPEConfig:
        """
        Build a config from a mapping, rejecting keys that are not fields.

        Raises
        ------
        ValueError
            If *values* has a key that is not a setting (listing the known ones).
        """
        return cls(**_checked_fields(cls, values))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready mapping (inverse of :meth:`from_dict`)."""
        return asdict(self)


#: Where models train: the GPU when there is one (``auto``), or the one named.
ACCELERATORS: tuple[str, ...] = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class TrainingSettings:
    """
    How models train on this deployment.

    Attributes
    ----------
    preset
        Name of the compressor settings in :data:`COMPRESSOR_PRESETS`
        (``LENSING_TRAINING_PRESET``).
    compressor
        The compressor settings (the preset's, unless given).
    npe
        The NPE settings.
    accelerator
        One of :data:`ACCELERATORS` (``LENSING_ACCELERATOR``).
    split
        How each configuration's rows are split into training, validation and test sets
        (``LENSING_SPLIT``: by simulation by default, ``tile`` for the earlier tile-level
        split).

    The augmentation group of both models (``symmetries``, ``LENSING_SYMMETRIES``) is a field
    of *compressor* and of *npe*; the compressor's objective (``loss``,
    ``LENSING_COMPRESSOR_LOSS``) is a field of *compressor*.
    """

    preset: str = "full"
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    npe: NPEConfig = field(default_factory=NPEConfig)
    accelerator: str = "auto"
    split: SplitSpec = field(default_factory=SplitSpec)

    @classmethod
    def from_preset(
        cls,
        preset: str,
        *,
        accelerator: str = "auto",
        symmetries: str = "face",
        loss: str = "mse",
    ) -> TrainingSettings:
        """
        The settings of a named preset (:func:`compressor_preset`).

        Parameters
        ----------
        preset
            A key of :data:`COMPRESSOR_PRESETS`.
        accelerator
            One of :data:`ACCELERATORS`.
        symmetries
            A key of :data:`SYMMETRY_GROUPS`, set in both the compressor and the NPE settings.
        loss
            The compressor's training objective, one of :data:`COMPRESSOR_LOSSES`.

        Raises
        ------
        ValueError
            An unknown *preset*, *symmetries* or *loss* (the message lists the choices).
        """
        return cls(
            preset=preset,
            compressor=replace(compressor_preset(preset), symmetries=symmetries, loss=loss),
            npe=NPEConfig(symmetries=symmetries),
            accelerator=accelerator,
        )

    def device(self) -> str:
        """Torch device name for the NPE and the report: ``auto``, ``cpu`` or ``cuda``."""
        return "cuda" if self.accelerator == "gpu" else self.accelerator
