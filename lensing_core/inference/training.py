"""Training the compressor of one configuration with Lightning, resumable and atomic.

Files in ``out_dir``::

    split.json         the split (written first; the NPE reads the same indices)
    norm_stats.json    statistics of the compressor-train split (written first)
    best.ckpt          weights of the lowest ``val_loss`` so far (weights only: for inference)
    last.ckpt          full training state at the last epoch end and at the end of a fit
    result.json        written last: the loss that made the summaries, the best validation
                       loss, train/validation MSE and R^2 of the point estimates, epochs,
                       steps, timing (the test set is not touched here: the FoM report
                       grades it, once)
    logs/metrics.csv   Lightning's CSV log (appended to on resume)

``result.json`` is the completion marker: it is removed when a fit starts and written only
after ``best.ckpt`` is final.

Checkpoints are never half-written where a reader looks. Lightning's own writer
(``lightning.fabric.utilities.cloud_io._atomic_save``) goes through an fsspec transaction,
which on a local file system writes a ``tempfile.mkstemp()`` file in the *system* temporary
directory and then ``shutil.move`` s it: on another file system that move is a copy to the
final name (a kill midway leaves a truncated ``best.ckpt``) and nothing is fsynced. So the
trainer gets :class:`AtomicCheckpointIO`, which writes into a directory of the run's own under
*tmp_root* (checked to be on the file system of ``out_dir``; a killed write's leftovers are
removed at the next start), fsyncs and ``os.replace`` s the file into place.

Resuming: if ``out_dir/last.ckpt`` exists it is checked (readable; same config apart from
:data:`RESUME_SAFE_FIELDS`; same normalisation statistics and split) and training continues
from it through ``Trainer.fit(ckpt_path=...)``; otherwise training starts from scratch and a
stale ``best.ckpt`` is removed. ``last.ckpt`` is written at every epoch end (a killed run loses
at most one epoch) and at the end of every fit, so a fit stopped by ``max_steps`` inside an
epoch resumes from that very step (Lightning then counts the interrupted epoch as done).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L  # noqa: N812 (Lightning's own convention)
import numpy as np
import numpy.typing as npt
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from lensing_core.dataset.loader import (
    RealizationBatchSampler,
    TileDataset,
    TileTable,
    iter_batches,
    realization_rows,
    tile_dataloader,
)
from lensing_core.dataset.normalization import NormStats, compute_norm_stats, save_norm_stats
from lensing_core.dataset.splits import Split, load_split, save_split
from lensing_core.inference.compressor import CompressorModule, load_compressor, read_checkpoint
from lensing_core.inference.config import (
    CompressorConfig,
    resolve_precision,
)
from lensing_core.io import atomic_open, write_json
from lensing_core.results import Table
from lensing_core.storage import CompressorFiles

logger = logging.getLogger(__name__)

#: Config fields that may change between a run and its resumption.
RESUME_SAFE_FIELDS = frozenset({"max_epochs", "num_workers", "precision", "deterministic"})

# what the metadata of a fit shows from result.json, besides R^2
_METADATA_KEYS = (
    "loss",
    "best_val_loss",
    "val_mse",
    "epochs",
    "global_step",
    "resumed_from_step",
    "train_tiles_per_s",
    "elapsed_s",
    "n_tiles",
    "tile_shape",
    "config",
)

# split name in result.json -> Split attribute (never the test set: the report grades it once)
_EVAL_SPLITS = {"train": "compressor_train", "val": "compressor_val"}


@dataclass(frozen=True)
class CompressorResult:
    """
    Outcome of :func:`fit_compressor`.

    Attributes
    ----------
    out_dir
        Directory holding the files of the run.
    metrics
        The ``result.json`` record. ``loss``: the objective that made the summaries
        (``config.loss``, ``"mse"`` or ``"vmim"``). ``best_val_loss``: the lowest validation
        loss, the one that picked ``best.ckpt``, in that objective's terms: the MSE of the
        standardised parameters for ``"mse"``, the mean negative log-likelihood
        ``-log q(theta_norm | t)`` (nats per tile, standardised theta) for ``"vmim"``.
        ``train_mse``, ``val_mse`` and ``r2``: the point estimates of
        :meth:`~lensing_core.inference.compressor.CompressorModule.predict_theta` of
        ``best.ckpt`` (the summaries for ``"mse"``, so ``val_mse`` matches
        ``best_val_loss``; the density head's mean for ``"vmim"``).
    norm_stats
        Statistics of the compressor-train split.
    """

    out_dir: Path
    metrics: Mapping[str, Any]
    norm_stats: NormStats

    @property
    def files(self) -> CompressorFiles:
        """The files of the run."""
        return CompressorFiles(self.out_dir)

    @property
    def best_ckpt(self) -> Path:
        """Weights with the lowest validation loss."""
        return self.files.best

    def to_metadata(self) -> dict[str, Any]:
        """Where the weights are, how well they do per split, and how the training went."""
        m = self.metrics
        r2 = m["r2"]
        params = sorted({p for scores in r2.values() for p in scores})
        table = Table(
            {"split": "string", **dict.fromkeys(params, "float")},
            [
                {"split": split, **{p: scores.get(p) for p in params}}
                for split, scores in r2.items()
            ],
        )
        return {
            "path": self.best_ckpt,
            "backbone": m["backbone"],
            "device": m["device"],
            "precision": m["precision"],
            "r2": table,
            **{f"r2_val_{p}": v for p, v in r2["val"].items() if v is not None},
            **{key: m[key] for key in _METADATA_KEYS},
        }


class AtomicCheckpointIO(TorchCheckpointIO):
    """
    ``torch.save`` into a temporary file in *tmp_root*, ``fsync``, ``os.replace`` into place.

    Parameters
    ----------
    tmp_root
        Directory for the temporaries, on the file system of the checkpoint directory.
    """

    def __init__(self, tmp_root: Path) -> None:
        super().__init__()
        self.tmp_root = Path(tmp_root)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Write *checkpoint* to *path*; readers see the old file or the whole new one."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_open(Path(path), "wb", tmp_root=self.tmp_root) as handle:
            torch.save(checkpoint, handle)


class _TrainClock(Callback):
    """Wall time and tiles of the training batches (validation excluded)."""

    def __init__(self) -> None:
        self.seconds, self.tiles = 0.0, 0
        self._mark: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.seconds += now - self._mark
        self._mark, self.tiles = now, self.tiles + len(batch[0])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark = time.perf_counter()


@contextlib.contextmanager
def _torch_flags(*, cuda: bool) -> Iterator[None]:
    """Restore the global torch flags that ``Trainer(deterministic=...)`` and we change."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    matmul = torch.get_float32_matmul_precision()
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for the float32 matmuls left
    try:
        with warnings.catch_warnings():
            # num_workers=0 is deliberate (a batch is one gather from memory), and the CSV
            # log and checkpoint directory are reused on purpose when resuming
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            # a fit stopped by max_steps inside an epoch saves before any validation
            warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
            # Lightning 2.6's pytree helper on torch >= 2.10, not ours to fix
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_float32_matmul_precision(matmul)


def finite_or_none(value: float) -> float | None:
    """*value* as a float, or None when it is NaN or infinite (JSON has neither)."""
    return float(value) if math.isfinite(value) else None


def _predict(
    module: CompressorModule, table: TileTable, indices: npt.ArrayLike, batch_size: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Physical point estimates and true theta of the rows *indices*, each ``(n, n_params)``."""
    pred, true = [], []
    for batch in iter_batches(table, batch_size, indices=indices):
        pred.append(module.predict_theta(batch.tiles, batch_size=batch_size))
        true.append(np.asarray(batch.theta, dtype=np.float64))
    n_params = module.norm_stats.n_params
    if not pred:
        return np.empty((0, n_params)), np.empty((0, n_params))
    return np.concatenate(pred), np.concatenate(true)


def r2_scores(pred: np.ndarray, true: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """``{name: 1 - SS_res / SS_tot}`` of ``(n, n_params)`` estimates; NaN where *true* is flat."""
    ss_res = np.sum((pred - true) ** 2, axis=0)
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)
    return {name: float(value) for name, value in zip(names, r2, strict=True)}


def evaluate_r2(
    module: CompressorModule, table: TileTable, indices: npt.ArrayLike, *, batch_size: int = 256
) -> dict[str, float]:
    """
    Coefficient of determination of each parameter on the rows *indices*.

    Parameters
    ----------
    module
        A compressor (put in eval mode for the prediction).
    table
        The tiles.
    indices
        Rows to evaluate (a split).
    batch_size
        Tiles per forward pass.

    Returns
    -------
        ``{name: 1 - SS_res / SS_tot}`` for ``module.norm_stats.param_names``, physical
        units; NaN where the true values do not vary.
    """
    pred, true = _predict(module, table, indices, batch_size)
    return r2_scores(pred, true, module.norm_stats.param_names)


def evaluate_split(
    module: CompressorModule, table: TileTable, indices: npt.ArrayLike, *, batch_size: int = 256
) -> dict[str, Any]:
    """
    ``{"mse": ..., "r2": {...}}`` on the rows *indices*.

    ``mse``: mean squared error of the standardised point estimates
    (:meth:`~lensing_core.inference.compressor.CompressorModule.predict_theta`) over rows
    and parameters, no augmentation, no target noise; the validation loss's quantity for a
    ``loss="mse"`` compressor (a ``"vmim"`` one is validated on its NLL instead).
    """
    pred, true = _predict(module, table, indices, batch_size)
    std = module.norm_stats.theta_std
    mse = float(np.mean(((pred - true) / std) ** 2)) if len(pred) else math.nan
    return {"mse": mse, "r2": r2_scores(pred, true, module.norm_stats.param_names)}


def _check_inputs(table: TileTable, split: Split, cfg: CompressorConfig) -> None:
    if table.tiles.ndim != 4 or table.tiles.shape[-1] != table.tiles.shape[-2]:
        raise ValueError(f"expected tiles (n, n_bins, n_pix, n_pix), got {table.tiles.shape}")
    split.check_rows(table.sim_id, what=repr(table))
    if len(table.param_names) != cfg.n_summaries:
        msg = (
            f"the compressor regresses n_summaries={cfg.n_summaries} outputs onto the "
            f"parameters, but the table has {len(table.param_names)}: {table.param_names}"
        )
        raise ValueError(msg)
    if len(split.compressor_val) == 0 or len(split.compressor_train) == 0:
        raise ValueError(f"compressor-train and -validation sets must be non-empty: {split}")


def _check_resumable(
    last: Path, out_dir: Path, cfg: CompressorConfig, stats: NormStats, split: Split
) -> int:
    """Global step of *last* after checking that it belongs to this run; errors name files."""
    ckpt = read_checkpoint(last, mmap=True)
    hp = ckpt["hyper_parameters"]
    start_over = f"delete {out_dir} to train from scratch"
    # settings added since the checkpoint was written take their defaults, as on loading
    old, new = {**CompressorConfig().to_dict(), **hp["config"]}, cfg.to_dict()
    changed = sorted(
        key
        for key in set(old) | set(new)
        if key not in RESUME_SAFE_FIELDS and old.get(key) != new.get(key)
    )
    if changed:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume from {last}: other settings ({detail}); {start_over}")
    try:
        same_stats = NormStats.from_dict(hp["norm_stats"]) == stats
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"cannot resume from {last}: bad norm stats ({err}); {start_over}"
        ) from None
    if not same_stats:
        msg = (
            f"cannot resume from {last}: its normalisation statistics differ from those of this "
            f"table's compressor-train split (the tiles or the split changed); {start_over}"
        )
        raise ValueError(msg)
    split_path = CompressorFiles(out_dir).split
    if split_path.exists() and load_split(split_path) != split:
        raise ValueError(f"cannot resume from {last}: {split_path} is another split; {start_over}")
    return int(ckpt.get("global_step", 0))


def _run_tmp_dir(tmp_root: Path, out_dir: Path) -> Path:
    """
    Directory of this run under *tmp_root*, emptied of what a killed run left there.

    Named by a hash of *out_dir*, so that it is safe to empty: runs of other configurations
    sharing *tmp_root* write elsewhere.
    """
    key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:16]
    run_tmp = tmp_root / f"compressor-{key}"
    run_tmp.mkdir(parents=True, exist_ok=True)
    if run_tmp.stat().st_dev != out_dir.stat().st_dev:
        msg = f"{tmp_root} is not on the file system of {out_dir}: cannot replace files atomically"
        raise ValueError(msg)
    for stale in run_tmp.glob("*.partial"):
        logger.info("removing %s, left by an interrupted write", stale)
        stale.unlink(missing_ok=True)
    return run_tmp


def _derived_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def fit_compressor(
    table: TileTable,
    split: Split,
    cfg: CompressorConfig,
    out_dir: Path,
    *,
    tmp_root: Path,
    accelerator: str = "auto",
    max_steps: int | None = None,
) -> CompressorResult:
    """
    Train the compressor of one configuration, resuming from ``out_dir/last.ckpt`` if present.

    Parameters
    ----------
    table
        All tiles of the configuration (``tiles`` float32 ``(n, n_bins, n_pix, n_pix)``,
        ``theta`` ``(n, n_params)`` physical units).
    split
        Split of *table*'s rows (:func:`lensing_core.dataset.splits.make_split`): trains on
        ``compressor_train`` (each tile in a noise realisation drawn anew every epoch, see
        :class:`~lensing_core.dataset.loader.RealizationBatchSampler`) and keeps the
        checkpoint of the lowest loss on ``compressor_val`` (realisation 0).
    cfg
        The run's settings.
    out_dir
        Where the files (module docstring) go; created if missing.
    tmp_root
        Temporaries of the atomic writes go to a subdirectory named after *out_dir*; must
        be on the file system of *out_dir*.
    accelerator
        Lightning accelerator: ``"auto"`` takes the GPU when there is one.
    max_steps
        Stop after this many optimiser steps in all (counting the steps of a resumed run),
        before ``cfg.max_epochs`` if that comes first.

    Returns
    -------
        Paths and the ``result.json`` record.

    Raises
    ------
    ValueError
        The table and split or config do not fit together, *tmp_root* is on another file
        system, or ``last.ckpt`` is corrupt or from a run with other settings, data or split
        (messages name the file).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _check_inputs(table, split, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = _run_tmp_dir(Path(tmp_root), out_dir)

    stats = compute_norm_stats(
        table.tiles, table.theta, split.compressor_train, param_names=table.param_names
    )
    files = CompressorFiles(out_dir)
    last, best = files.last, files.best
    resumed_from = _check_resumable(last, out_dir, cfg, stats, split) if last.exists() else None
    files.result.unlink(missing_ok=True)
    if resumed_from is None:
        best.unlink(missing_ok=True)  # from an older run this one does not continue
    save_split(split, files.split, tmp_root=tmp_root)
    save_norm_stats(stats, files.norm_stats, tmp_root=tmp_root)

    # a resumed run draws a new shuffling and augmentation stream instead of replaying the
    # first epochs' one; a fresh run's weights are seeded by cfg.seed itself
    seed = cfg.seed if resumed_from is None else _derived_seed(cfg.seed, resumed_from)
    L.seed_everything(seed, workers=True, verbose=False)
    n_train = len(split.compressor_train)
    drop_last = n_train >= cfg.batch_size  # no tiny trailing batch for BatchNorm
    steps_per_epoch = n_train // cfg.batch_size if drop_last else 1
    module = CompressorModule(
        cfg, stats, in_chans=table.tile_shape[0], steps_per_epoch=steps_per_epoch
    )
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    loader_kwargs: dict[str, Any] = {"num_workers": cfg.num_workers, "pin_memory": cuda}
    if cfg.num_workers:
        loader_kwargs["persistent_workers"] = True
    sampler = RealizationBatchSampler(
        realization_rows(table, split.compressor_train),
        cfg.batch_size,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
    )
    train_loader = DataLoader(TileDataset(table), sampler=sampler, batch_size=None, **loader_kwargs)
    val_loader = tile_dataloader(
        TileDataset(table, split.compressor_val), cfg.batch_size, **loader_kwargs
    )

    precision = resolve_precision(cfg.precision, accelerator)
    best_cb = ModelCheckpoint(
        dirpath=out_dir,
        filename=best.stem,
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_weights_only=True,
        enable_version_counter=False,
    )
    last_cb = ModelCheckpoint(
        dirpath=out_dir, filename=last.stem, save_top_k=1, enable_version_counter=False
    )
    clock = _TrainClock()
    with _torch_flags(cuda=cuda):
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            precision=precision,  # type: ignore[arg-type]  # one of PRECISIONS, checked
            max_epochs=cfg.max_epochs,
            max_steps=-1 if max_steps is None else max_steps,
            deterministic="warn" if cfg.deterministic else None,
            gradient_clip_val=cfg.grad_clip_norm or None,
            callbacks=[best_cb, last_cb, clock],
            plugins=[AtomicCheckpointIO(tmp_root)],
            logger=CSVLogger(out_dir, name="", version=CompressorFiles.LOGS),
            default_root_dir=out_dir,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=max(1, min(50, steps_per_epoch)),
        )
        logger.info(
            "training compressor %s on %d tiles (%d val) of %s, %s, %s%s",
            cfg.backbone,
            n_train,
            len(split.compressor_val),
            table.tile_shape,
            _device_name(trainer),
            precision,
            f", resuming from step {resumed_from}" if resumed_from is not None else "",
        )
        trainer.fit(
            module, train_loader, val_loader, ckpt_path=last if resumed_from is not None else None
        )
        # the epoch-end checkpoints miss a fit stopped by max_steps inside an epoch
        trainer.save_checkpoint(last, weights_only=False)
        if not best.exists():
            logger.warning("no validation epoch finished: %s holds the final weights", best)
            trainer.save_checkpoint(best, weights_only=True)

    device = trainer.strategy.root_device
    trained = load_compressor(best, map_location=device)
    scores = {
        name: evaluate_split(trained, table, getattr(split, attr), batch_size=cfg.batch_size)
        for name, attr in _EVAL_SPLITS.items()
    }
    best_score = best_cb.best_model_score
    metrics = {
        "backbone": cfg.backbone,
        "loss": cfg.loss,
        "param_names": list(table.param_names),
        **{f"{name}_mse": finite_or_none(s["mse"]) for name, s in scores.items()},
        "best_val_loss": None if best_score is None else finite_or_none(float(best_score)),
        "r2": {
            name: {k: finite_or_none(v) for k, v in s["r2"].items()} for name, s in scores.items()
        },
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "resumed_from_step": resumed_from,
        "steps_per_epoch": steps_per_epoch,
        "elapsed_s": time.perf_counter() - start,
        "train_seconds": clock.seconds,
        "train_tiles_per_s": clock.tiles / clock.seconds if clock.seconds > 0 else None,
        "device": _device_name(trainer),
        "precision": precision,
        "tile_shape": list(table.tile_shape),
        "n_tiles": split.sizes(),
        "config": cfg.to_dict(),
        "files": {
            "best_ckpt": files.best.name,
            "last_ckpt": files.last.name,
            "norm_stats": files.norm_stats.name,
            "split": files.split.name,
        },
    }
    write_json(files.result, metrics, tmp_root=tmp_root, indent=1)
    logger.info(
        "compressor %s (%s loss): val MSE %.4f, val R^2 %s, %d steps in %.1f s",
        cfg.backbone,
        cfg.loss,
        scores["val"]["mse"],
        scores["val"]["r2"],
        trainer.global_step,
        metrics["elapsed_s"],
    )
    return CompressorResult(out_dir=out_dir, metrics=metrics, norm_stats=stats)
