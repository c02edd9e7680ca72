"""Models per (lmax, noise level): the field-level compressor and the Gaussian NPE.

Both train where ``TrainingResource.accelerator`` says (``auto``: the GPU when there is one,
the CPU otherwise, no change of code) and run in the ``gpu`` pool, which ``dagster.yaml``
limits to one step at a time; their jobs also carry the run tag ``lensing/resource=gpu``,
limited to one run at a time by the run queue.
"""

import dataclasses

import dagster as dg

from lensing_assets.defs.conditions import rebuild_model
from lensing_assets.defs.dataset import tile_shards
from lensing_assets.defs.metadata import metadata_table
from lensing_assets.defs.partitions import config_of, dataset_partitions_def
from lensing_assets.defs.resources import LensingStorage, TrainingResource
from lensing_core.inference.config import CompressorConfig, NPEConfig
from lensing_core.io import InputMissingError
from lensing_core.storage import DataRoot

GPU_POOL = "gpu"
GPU_RUN_TAGS = {"lensing/resource": "gpu"}


def missing_input(err: InputMissingError, root: DataRoot, key: str) -> dg.Failure:
    """A Failure for a missing upstream file of configuration *key*.

    Its description ends with the command that makes the first missing upstream asset.
    """
    lmax, noise = config_of(key)
    upstream = [
        ("tile_shards", root.shards(lmax, noise).manifest),
        ("compressor_model", root.compressor(lmax, noise).result),
        ("npe_model", root.npe(lmax, noise).checkpoint),
    ]
    asset = next((name for name, path in upstream if not path.exists()), "tile_shards")
    hint = f"Make it with: dagster asset materialize --select {asset} --partition '{key}'"
    return dg.Failure(description=f"{err}. {hint}", allow_retries=False)


_NPE_DEFAULTS = NPEConfig()


class CompressorRunConfig(dg.Config):
    """Run config of ``compressor_model``: overrides of the preset's settings.

    A field left unset keeps the value of the ``training`` resource's preset; the fields are
    those of :class:`lensing_core.inference.config.CompressorConfig`, plus ``max_steps``.
    """

    backbone: str | None = None
    n_summaries: int | None = None
    head_hidden: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    max_epochs: int | None = None
    warmup_epochs: float | None = None
    lr_decay_every_epochs: int | None = None
    lr_decay_gamma: float | None = None
    grad_clip_norm: float | None = None
    target_noise_std: float | None = None
    augment_rolls: bool | None = None
    precision: str | None = None
    deterministic: bool | None = None
    seed: int | None = None
    num_workers: int | None = None
    max_steps: int | None = None

    def to_core(self, preset: CompressorConfig) -> CompressorConfig:
        """*preset* with the fields set here replaced."""
        names = {f.name for f in dataclasses.fields(CompressorConfig)}
        values = {k: v for k, v in self.__dict__.items() if k in names and v is not None}
        return dataclasses.replace(preset, **values)


class NPERunConfig(dg.Config):
    """Run config of ``npe_model``.

    The fields (and defaults) of :class:`lensing_core.inference.npe.NPEConfig`, plus
    ``augment_rolls`` for the on-the-fly augmentation.
    """

    hidden: int = _NPE_DEFAULTS.hidden
    n_hidden_layers: int = _NPE_DEFAULTS.n_hidden_layers
    min_scale: float = _NPE_DEFAULTS.min_scale
    lr: float = _NPE_DEFAULTS.lr
    weight_decay: float = _NPE_DEFAULTS.weight_decay
    batch_size: int = _NPE_DEFAULTS.batch_size
    max_epochs: int = _NPE_DEFAULTS.max_epochs
    patience: int = _NPE_DEFAULTS.patience
    min_delta: float = _NPE_DEFAULTS.min_delta
    lr_decay_patience: int = _NPE_DEFAULTS.lr_decay_patience
    lr_decay_factor: float = _NPE_DEFAULTS.lr_decay_factor
    seed: int = _NPE_DEFAULTS.seed
    augment_rolls: bool = False

    def to_core(self) -> NPEConfig:
        """The core NPE settings."""
        names = {f.name for f in dataclasses.fields(NPEConfig)}
        return NPEConfig(**{k: v for k, v in self.__dict__.items() if k in names})


def _r2_table(r2: dict[str, dict[str, float | None]]) -> dg.TableMetadataValue:
    params = sorted({p for scores in r2.values() for p in scores})
    return metadata_table(
        {"split": "string", **dict.fromkeys(params, "float")},
        [{"split": split, **{p: scores.get(p) for p in params}} for split, scores in r2.items()],
    )


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[tile_shards],
    group_name="models",
    kinds={"pytorch"},
    pool=GPU_POOL,
    code_version="compressor-1",
    automation_condition=rebuild_model,
)
def compressor_model(
    context: dg.AssetExecutionContext,
    config: CompressorRunConfig,
    storage: LensingStorage,
    training: TrainingResource,
) -> dg.MaterializeResult:
    """EfficientNet compressor of one configuration: tiles -> standardised (Omega_m, S8).

    Resumes an interrupted training from its last checkpoint.
    """
    from lensing_core.inference.pipeline import train_compressor  # torch: load when used

    lmax, noise = config_of(context.partition_key)
    cfg = config.to_core(training.compressor_config())
    root = storage.data_root()
    try:
        result = train_compressor(
            root,
            lmax,
            noise,
            cfg,
            accelerator=training.accelerator,
            max_steps=config.max_steps,
        )
    except InputMissingError as err:
        raise missing_input(err, root, str(context.partition_key)) from None
    m = result.metrics
    r2_test = m["r2"]["test"]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.best_ckpt)),
            "backbone": m["backbone"],
            "device": m["device"],
            "precision": m["precision"],
            "r2": _r2_table(m["r2"]),
            **{f"r2_test_{p}": v for p, v in r2_test.items() if v is not None},
            "val_mse": m["val_mse"],
            "test_mse": m["test_mse"],
            "epochs": m["epochs"],
            "global_step": m["global_step"],
            "resumed_from_step": m["resumed_from_step"],
            "train_tiles_per_s": m["train_tiles_per_s"],
            "elapsed_s": m["elapsed_s"],
            "n_tiles": m["n_tiles"],
            "tile_shape": m["tile_shape"],
            "config": m["config"],
        }
    )


@dg.asset(
    partitions_def=dataset_partitions_def,
    deps=[compressor_model],
    group_name="models",
    kinds={"pytorch"},
    pool=GPU_POOL,
    code_version="npe-1",
    automation_condition=rebuild_model,
)
def npe_model(
    context: dg.AssetExecutionContext,
    config: NPERunConfig,
    storage: LensingStorage,
    training: TrainingResource,
) -> dg.MaterializeResult:
    """Gaussian NPE of one configuration, trained on summaries of augmented tiles."""
    from lensing_core.inference.pipeline import train_npe  # torch: load when used

    lmax, noise = config_of(context.partition_key)
    root = storage.data_root()
    try:
        result = train_npe(
            root,
            lmax,
            noise,
            config.to_core(),
            device=training.device(),
            augment_rolls=config.augment_rolls,
        )
    except InputMissingError as err:
        raise missing_input(err, root, str(context.partition_key)) from None
    r = result.record
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.checkpoint)),
            "compressor_checkpoint": dg.MetadataValue.path(r["compressor_checkpoint"]),
            "compressor_sha256": r["compressor_sha256"],
            "best_val_nll": r["best_val_nll"],
            "best_epoch": r["best_epoch"],
            "epochs": r["epochs"],
            "stopped_early": r["stopped_early"],
            "n_train": r["n_train"],
            "n_val": r["n_val"],
            "device": r["device"],
            "elapsed_s": r["elapsed_s"],
        }
    )
