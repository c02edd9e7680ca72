"""Resuming the compressor's training: an interrupted fit continues, a finished one starts over.

``resumed_from_step`` and the final ``global_step`` cannot tell a resumed fit from one that
trained again from scratch (the code sets the first itself, and the second reaches
``max_steps`` either way), so a spy on ``CompressorModule.training_step`` records what each
fit's first optimiser step starts from (weights, AdamW state, learning-rate schedule position,
global step) and how many steps the fit executes; the tests compare these with ``last.ckpt``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lensing_core.dataset.loader import TileTable
from lensing_core.dataset.parquet import write_config_shards
from lensing_core.dataset.splits import Split, SplitSpec, make_split
from lensing_core.inference.compressor import CompressorModule
from lensing_core.inference.config import CompressorConfig
from lensing_core.inference.pipeline import train_compressor
from lensing_core.inference.training import fit_compressor
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, PARAM_NAMES, synthetic_catalog
from lensing_core.storage import DataRoot

pytestmark = pytest.mark.filterwarnings(
    "ignore:You're resuming from a checkpoint that ended before"
)

# 60 non-fiducial tiles: 42 to train on, 5 steps of 8 per epoch; max_steps stops every fit
#: resuming does not depend on how rows are split: the small tile-level split fits these toys
TILE_SPLIT = SplitSpec("tile")
CFG = CompressorConfig(
    backbone="test_efficientnet", batch_size=8, max_epochs=50, lr=2e-3, warmup_epochs=0.5
)


@dataclass
class FitTrace:
    """What one fit's first training step started from, and how many steps the fit ran."""

    global_step: int
    weights: dict[str, torch.Tensor] = field(repr=False)
    optimizer: dict[str, Any] = field(repr=False)
    schedule_step: int
    steps: int = 1


@dataclass
class StepSpy:
    """Wraps ``CompressorModule.training_step``; one :class:`FitTrace` per module trained."""

    fits: list[FitTrace] = field(default_factory=list)
    _module: CompressorModule | None = field(default=None, repr=False)

    def record(self, module: CompressorModule) -> None:
        if module is self._module:
            self.fits[-1].steps += 1
            return
        self._module = module
        trainer = module.trainer
        self.fits.append(
            FitTrace(
                global_step=trainer.global_step,
                weights={k: v.detach().clone() for k, v in module.state_dict().items()},
                optimizer=copy.deepcopy(trainer.optimizers[0].state_dict()),
                schedule_step=trainer.lr_scheduler_configs[0].scheduler.last_epoch,
            )
        )


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> StepSpy:
    spy = StepSpy()
    original = CompressorModule.training_step

    def training_step(self: CompressorModule, batch: Any, batch_idx: int) -> Any:
        spy.record(self)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(CompressorModule, "training_step", training_step)
    return spy


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two nested dicts / lists of tensors and scalars differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
            return [f"{where}: {only_a} keys only in the first, {only_b} only in the second"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}/{i}")
        ]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def read_last(out_dir: Path) -> dict[str, Any]:
    return torch.load(out_dir / "last.ckpt", weights_only=True)


def assert_continues(fit: FitTrace, saved: Mapping[str, Any]) -> None:
    """The first step of *fit* starts exactly from the training state *saved*."""
    problems = []
    if fit.global_step != saved["global_step"]:
        problems.append(f"it ran at global step {fit.global_step}, not {saved['global_step']}")
    if weights := differences(fit.weights, saved["state_dict"]):
        problems.append(f"{len(weights)} weight tensors differ, e.g. {weights[:2]}")
    if adamw := differences(fit.optimizer, saved["optimizer_states"][0]):
        problems.append(f"the AdamW state differs at {adamw[:2]}")
    if fit.schedule_step != saved["lr_schedulers"][0]["last_epoch"]:
        problems.append(f"the learning-rate schedule was at step {fit.schedule_step}")
    assert not problems, "the first step does not continue last.ckpt: " + "; ".join(problems)


def adamw_steps(saved: Mapping[str, Any]) -> set[float]:
    """The AdamW ``step`` counters of all parameters in a checkpoint."""
    return {float(s["step"]) for s in saved["optimizer_states"][0]["state"].values()}


@pytest.fixture(scope="module")
def table() -> TileTable:
    """Random 4-bin 32 x 32 tiles, 12 per sim, of 5 sims and the fiducial one."""
    rng = np.random.default_rng(3)
    sims = np.r_[np.arange(1, 6), FIDUCIAL_SIM_ID]
    theta = np.repeat(rng.uniform((0.2, 0.6), (0.4, 0.9), (len(sims), 2)), 12, axis=0)
    tiles = rng.standard_normal((len(theta), 4, 32, 32)).astype(np.float32)
    return TileTable(
        tiles=tiles,
        theta=theta,
        param_names=PARAM_NAMES,
        columns={"sim_id": np.repeat(sims, 12)},
        shard_paths=(),
    )


@pytest.fixture(scope="module")
def split(table: TileTable) -> Split:
    return make_split(table.sim_id, TILE_SPLIT)


def test_interrupted_fit_continues_from_its_saved_state(
    spy: StepSpy, tmp_path: Path, table: TileTable, split: Split
) -> None:
    """A fit resumed from ``last.ckpt`` starts at the saved weights, AdamW state and step."""
    out, tmp = tmp_path / "run", tmp_path / ".tmp"
    fit_compressor(table, split, CFG, out, tmp_root=tmp, accelerator="cpu", max_steps=3)
    (out / "result.json").unlink()  # as a run killed after its last checkpoint
    saved = read_last(out)
    assert saved["global_step"] == 3
    assert adamw_steps(saved) == {3.0}

    fit_compressor(table, split, CFG, out, tmp_root=tmp, accelerator="cpu", max_steps=5)
    first, resumed = spy.fits
    assert first.global_step == 0
    assert first.optimizer["state"] == {}
    assert_continues(resumed, saved)
    assert resumed.steps == 2, "steps 4 and 5 only"
    assert adamw_steps(read_last(out)) == {5.0}


def test_resume_at_the_saved_step_trains_nothing(
    spy: StepSpy, tmp_path: Path, table: TileTable, split: Split
) -> None:
    """Resuming with ``max_steps`` already reached runs no step and keeps the saved state."""
    out, tmp = tmp_path / "run", tmp_path / ".tmp"
    fit_compressor(table, split, CFG, out, tmp_root=tmp, accelerator="cpu", max_steps=3)
    (out / "result.json").unlink()
    saved = read_last(out)

    again = fit_compressor(table, split, CFG, out, tmp_root=tmp, accelerator="cpu", max_steps=3)
    ran = sum(fit.steps for fit in spy.fits[1:])
    assert ran == 0, f"the resumed fit ran {ran} training steps, none were left"
    assert again.metrics["global_step"] == 3
    final = read_last(out)
    assert differences(final["state_dict"], saved["state_dict"]) == []
    assert differences(final["optimizer_states"], saved["optimizer_states"]) == []


# --- the pipeline: resume an interrupted training, start a finished one over ------------------

SIMS = (3, 7, 12, FIDUCIAL_SIM_ID)
LMAX, NOISE = 200, "des_y3"


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    """Shards of ``lmax_200_des_y3`` from random 128 x 128 tiles of four sims."""
    root = DataRoot(tmp_path / "root")
    rng = np.random.default_rng(5)
    for sim_id in SIMS:
        tiles = rng.standard_normal((12, 4, 128, 128)).astype(np.float32)
        root.write_tiles(sim_id, LMAX, {NOISE: tiles}, {"sim_id": sim_id, "lmax": LMAX})
    write_config_shards(root, synthetic_catalog(110), LMAX, NOISE, SIMS)
    return root


def test_pipeline_resumes_an_interrupted_training_and_restarts_a_finished_one(
    spy: StepSpy, root: DataRoot
) -> None:
    """Without ``result.json`` the saved state continues; with it, fresh weights train again."""
    files = root.compressor(LMAX, NOISE)
    train_compressor(root, LMAX, NOISE, CFG, split=TILE_SPLIT, accelerator="cpu", max_steps=2)
    files.result.unlink()  # interrupted
    interrupted = read_last(files.dir)
    train_compressor(root, LMAX, NOISE, CFG, split=TILE_SPLIT, accelerator="cpu", max_steps=4)
    finished = read_last(files.dir)
    train_compressor(root, LMAX, NOISE, CFG, split=TILE_SPLIT, accelerator="cpu", max_steps=2)

    assert len(spy.fits) == 3, f"expected a fresh, a resumed and a restarted fit: {spy.fits}"
    fresh, resumed, restarted = spy.fits
    assert_continues(resumed, interrupted)
    assert resumed.steps == 2
    # the finished training's state is dropped: the same fresh start as the first fit
    assert restarted.global_step == 0
    assert restarted.optimizer["state"] == {}
    assert differences(restarted.weights, fresh.weights) == []
    assert differences(restarted.weights, finished["state_dict"]) != []
    assert restarted.steps == 2
