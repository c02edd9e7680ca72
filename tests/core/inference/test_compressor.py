"""Tests of the compressor: config, network, augmentation, training, resume, checkpoints.

Everything runs on the CPU with timm's tiny ``test_efficientnet`` on 32 x 32 toy tiles whose
parameters are learnable: the amplitude grows with S8 and the smoothing scale with Omega_m.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lensing_core.dataset.loader import TileTable
from lensing_core.dataset.normalization import NormStats, compute_norm_stats, load_norm_stats
from lensing_core.dataset.splits import Split, SplitSpec, load_split, make_split
from lensing_core.inference.compressor import (
    CompressorModule,
    augment_tiles,
    build_backbone,
    load_compressor,
    lr_factor,
)
from lensing_core.inference.config import CompressorConfig, resolve_precision
from lensing_core.inference.training import (
    CompressorResult,
    evaluate_r2,
    evaluate_split,
    fit_compressor,
)
from lensing_core.io import InputMissingError
from lensing_core.sims.catalog import FIDUCIAL_SIM_ID, PARAM_NAMES

N_PIX = 32
N_SIMS = 14  # 13 + the fiducial sim, split whole: 7 sims (84 tiles, 5 batches) for training
#: 7 / 2 / 2 / 1 / 1 of the 13 sims: 2 validation sims choose the checkpoint
TOY_SPLIT = SplitSpec(fractions=(7 / 13, 2 / 13, 2 / 13, 1 / 13, 1 / 13))


def toy_table(n_sims: int = N_SIMS, n_pix: int = N_PIX, seed: int = 0) -> TileTable:
    """Gaussian random tiles, 12 per sim: amplitude ~ S8**3, smoothing length ~ Omega_m."""
    rng = np.random.default_rng(seed)
    sims = np.r_[np.arange(1, n_sims), FIDUCIAL_SIM_ID]
    theta_sim = np.column_stack(
        [rng.uniform(0.2, 0.4, len(sims)), rng.uniform(0.6, 0.9, len(sims))]
    )
    theta_sim[-1] = (0.3, 0.78)
    sim_ids, theta = np.repeat(sims, 12), np.repeat(theta_sim, 12, axis=0)
    white = rng.standard_normal((len(sim_ids), 4, n_pix, n_pix))
    tiles = np.empty(white.shape, dtype=np.float32)
    for i, (omega_m, s8) in enumerate(theta):
        width = 0.5 + 10 * (omega_m - 0.2)  # pixels
        field = gaussian_filter(white[i], sigma=(0, width, width), mode="wrap")
        tiles[i] = 0.02 * (s8 / 0.75) ** 3 * field / field.std()
    tiles.flags.writeable = False  # as the loader's tables
    return TileTable(
        tiles=tiles,
        theta=theta,
        param_names=PARAM_NAMES,
        columns={"sim_id": sim_ids},
        shard_paths=(),
    )


def tiny_config(**overrides: object) -> CompressorConfig:
    values = {
        "backbone": "test_efficientnet",
        "batch_size": 16,
        "max_epochs": 8,
        "lr": 2e-3,
        "warmup_epochs": 0.5,
        "lr_decay_every_epochs": 100,
        **overrides,
    }
    return CompressorConfig.from_dict(values)


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, table: TileTable, split: Split
) -> CompressorResult:
    """8 epochs of 5 steps (40 steps, ~3 s on 2 cores)."""
    out = tmp_path_factory.mktemp("compressor")
    return fit_compressor(
        table, split, tiny_config(), out / "run", tmp_root=out / ".tmp", accelerator="cpu"
    )


# --- config ------------------------------------------------------------------------------------


def test_config_defaults_and_unknown_keys() -> None:
    cfg = CompressorConfig()
    assert cfg.backbone == "efficientnetv2_s"
    assert (cfg.n_summaries, cfg.target_noise_std, cfg.seed) == (2, 0.005, 42)
    assert cfg.augment_rolls is False
    assert CompressorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown CompressorConfig keys \['learning_rate'\]"):
        CompressorConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"lr must be > 0.*precision must be one of"):
        CompressorConfig(lr=0, precision="fp8")
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_precision("32-true") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "gpu") == "32-true"


def test_lr_schedule_warmup_then_step_decay() -> None:
    factors = [lr_factor(s, warmup_steps=4, decay_every_steps=10, gamma=0.5) for s in range(30)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4:14] == [1.0] * 10
    assert factors[14:24] == [0.5] * 10
    assert factors[24] == 0.25
    assert lr_factor(0, warmup_steps=0, decay_every_steps=10, gamma=0.5) == 1.0


# --- network and augmentation ------------------------------------------------------------------


def test_backbone_shapes_and_unknown_name() -> None:
    net = build_backbone(tiny_config(), in_chans=4)
    out = net(torch.randn(3, 4, N_PIX, N_PIX))  # (3, 4, 32, 32) -> (3, 2)
    assert out.shape == (3, 2)
    assert net.head[-1].out_features == 2
    with pytest.raises(ValueError, match=r"cannot build timm backbone 'no_such_net'"):
        build_backbone(tiny_config(backbone="no_such_net"))


def dihedral(tile: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square tile ``(n_bins, n, n)``."""
    return [torch.rot90(t, k, dims=(-2, -1)) for t in (tile, tile.flip(-1)) for k in range(4)]


def test_augment_applies_one_symmetry_per_tile() -> None:
    tiles = torch.randn(64, 4, 8, 8)
    out = augment_tiles(tiles, symmetries="square", generator=torch.Generator().manual_seed(0))
    assert out.shape == tiles.shape
    seen = set()
    for before, after in zip(tiles, out, strict=True):
        matches = [i for i, t in enumerate(dihedral(before)) if torch.equal(t, after)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))
    again = augment_tiles(tiles, symmetries="square", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_augment_rolls_keep_pixel_values() -> None:
    tiles = torch.randn(16, 4, 8, 8)
    out = augment_tiles(tiles, rolls=True, generator=torch.Generator().manual_seed(1))
    flat = (tiles.flatten(2).sort(-1).values, out.flatten(2).sort(-1).values)
    assert torch.equal(*flat)
    plain = augment_tiles(tiles, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(out, plain)
    with pytest.raises(ValueError, match=r"square"):
        augment_tiles(torch.zeros(2, 4, 8, 6))


@pytest.mark.parametrize("symmetries", ["face", "square"])
def test_module_augments_with_the_configured_group(
    table: TileTable, stats: NormStats, monkeypatch: pytest.MonkeyPatch, symmetries: str
) -> None:
    """The training step passes ``config.symmetries`` to :func:`augment_tiles`."""
    calls: list[dict[str, Any]] = []

    def spy(tiles: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return augment_tiles(tiles, **kwargs)

    monkeypatch.setattr("lensing_core.inference.compressor.augment_tiles", spy)
    module = CompressorModule(tiny_config(symmetries=symmetries), stats)
    batch = (torch.tensor(table.tiles[:4]), torch.tensor(table.theta[:4]))
    module._step(batch, train=True)
    module._step(batch, train=False)
    assert calls == [{"symmetries": symmetries, "rolls": False}]


def test_module_compress_shapes(table: TileTable, stats: NormStats) -> None:
    torch.manual_seed(0)
    module = CompressorModule(tiny_config(), stats)
    module.train()
    from_numpy = module.compress(table.tiles[:5], batch_size=2)
    assert from_numpy.shape == (5, 2)
    assert from_numpy.dtype == torch.float32
    assert not from_numpy.requires_grad
    assert module.training  # compress restores the mode it found
    from_torch = module.compress(torch.from_numpy(table.tiles[:5].copy()))
    torch.testing.assert_close(from_numpy, from_torch)
    assert module.predict_theta(table.tiles[:3]).shape == (3, 2)
    assert module.compress(table.tiles[:0]).shape == (0, 2)
    with pytest.raises(ValueError, match=r"expected tiles \(n, 4, n_pix, n_pix\), got \(2, 3,"):
        module.compress(table.tiles[:2, :3])


def test_norm_stats_must_match_the_model(table: TileTable, stats: NormStats) -> None:
    three_bins = compute_norm_stats(table.tiles[:, :3], table.theta, np.arange(0, 100, 7))
    with pytest.raises(ValueError, match=r"norm stats are for 3 bins but .* 4 input channels"):
        CompressorModule(tiny_config(), three_bins)
    with pytest.raises(ValueError, match=r"2 parameters .* n_summaries=3"):
        CompressorModule(tiny_config(n_summaries=3), stats)


# --- training ----------------------------------------------------------------------------------


def test_fit_writes_files_and_result(trained: CompressorResult, split: Split, stats) -> None:
    out = trained.out_dir
    names = {p.name for p in out.iterdir()}
    assert {"best.ckpt", "last.ckpt", "norm_stats.json", "split.json", "result.json"} <= names
    assert not any(name.endswith(".partial") for name in names)
    assert [p for p in (out.parent / ".tmp").rglob("*") if p.is_file()] == []
    record = json.loads(trained.files.result.read_text())
    assert record == json.loads(json.dumps(trained.metrics))
    for key in ("train_mse", "val_mse", "best_val_loss", "elapsed_s"):
        assert isinstance(record[key], float)
        assert record[key] >= 0
    assert record["epochs"] == 8
    assert record["global_step"] == 40
    assert record["steps_per_epoch"] == 5
    assert record["resumed_from_step"] is None
    assert record["backbone"] == "test_efficientnet"
    assert record["device"] == "cpu"
    assert record["precision"] == "32-true"
    assert record["n_tiles"] == split.sizes()
    assert set(record["r2"]) == {"train", "val"}  # the test set is the report's, not touched
    assert "test_mse" not in record
    assert record["train_tiles_per_s"] > 0
    assert CompressorConfig.from_dict(record["config"]) == tiny_config()
    # statistics of the compressor-train split only, and the very split given
    assert load_norm_stats(trained.files.norm_stats) == stats == trained.norm_stats
    assert load_split(trained.files.split) == split


def test_loss_decreases_on_learnable_toy(
    trained: CompressorResult, table: TileTable, split: Split, stats: NormStats
) -> None:
    torch.manual_seed(tiny_config().seed)
    untrained = evaluate_split(CompressorModule(tiny_config(), stats), table, split.compressor_val)
    assert trained.metrics["val_mse"] < 0.6 * untrained["mse"]
    assert trained.metrics["r2"]["val"]["S8"] > 0.3


def test_best_checkpoint_alone_is_enough(
    trained: CompressorResult, table: TileTable, split: Split
) -> None:
    module = load_compressor(trained.best_ckpt)
    assert not module.training
    assert module.norm_stats == trained.norm_stats
    scores = evaluate_split(module, table, split.compressor_val)
    assert scores["mse"] == pytest.approx(trained.metrics["val_mse"], rel=1e-5)
    assert scores["mse"] == pytest.approx(trained.metrics["best_val_loss"], rel=1e-4)
    r2 = evaluate_r2(module, table, split.compressor_val)
    assert list(r2) == list(PARAM_NAMES)
    assert r2 == pytest.approx(trained.metrics["r2"]["val"])


def test_fit_is_reproducible(tmp_path: Path, table: TileTable, split: Split) -> None:
    runs = [
        fit_compressor(
            table,
            split,
            tiny_config(),
            tmp_path / f"run{i}",
            tmp_root=tmp_path / ".tmp",
            max_steps=3,
        )
        for i in range(2)
    ]
    first, second = (torch.load(r.files.last, weights_only=True)["state_dict"] for r in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert runs[0].metrics["val_mse"] == runs[1].metrics["val_mse"]


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_resume_continues_from_saved_step(tmp_path: Path, table: TileTable, split: Split) -> None:
    cfg = tiny_config(max_epochs=3)
    out, tmp = tmp_path / "run", tmp_path / ".tmp"
    first = fit_compressor(table, split, cfg, out, tmp_root=tmp, max_steps=4, accelerator="cpu")
    assert first.metrics["global_step"] == 4
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 4
    # a run with other settings must not continue this one
    with pytest.raises(ValueError, match=r"cannot resume from .*last.ckpt: other settings \(lr"):
        fit_compressor(table, split, tiny_config(max_epochs=3, lr=1e-2), out, tmp_root=tmp)
    second = fit_compressor(table, split, cfg, out, tmp_root=tmp, max_steps=8, accelerator="cpu")
    assert second.metrics["resumed_from_step"] == 4
    assert second.metrics["global_step"] == 8
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 8
    assert (out / "result.json").exists()


# Runs a 3-epoch fit in a fresh interpreter that SIGKILLs itself halfway through writing
# last.ckpt at the end of epoch 2 (global step 10).
_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
import torch
from lensing_core.dataset.splits import make_split
from lensing_core.inference.training import fit_compressor
from tests.core.inference.test_compressor import TOY_SPLIT, tiny_config, toy_table

save = torch.save

def dying_save(obj, f, *args, **kwargs):
    if "last.ckpt" in getattr(f, "name", "") and obj.get("global_step") == 10:
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *args, **kwargs)

torch.save = dying_save
table, root = toy_table(), Path(sys.argv[1])
split = make_split(table.sim_id, TOY_SPLIT)
fit_compressor(
    table, split, tiny_config(max_epochs=3), root / "run", tmp_root=root / ".tmp", accelerator="cpu"
)
"""


def test_kill_while_writing_then_resume(tmp_path: Path, table: TileTable, split: Split) -> None:
    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(tmp_path)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "run"
    # the half-written file stayed in the temporary directory; readers see whole files only
    assert not (out / "result.json").exists()
    assert not list(out.glob("*.partial"))
    assert len(list((tmp_path / ".tmp").rglob("last.ckpt.*.partial"))) == 1
    assert torch.load(out / "last.ckpt", weights_only=True)["global_step"] == 5
    load_compressor(out / "best.ckpt")
    resumed = fit_compressor(
        table, split, tiny_config(max_epochs=3), out, tmp_root=tmp_path / ".tmp", accelerator="cpu"
    )
    assert resumed.metrics["resumed_from_step"] == 5
    assert resumed.metrics["global_step"] == 15
    assert resumed.metrics["epochs"] == 3
    assert not list((tmp_path / ".tmp").rglob("*.partial"))


def test_corrupt_checkpoints_are_named(
    trained: CompressorResult, tmp_path: Path, table: TileTable, split: Split
) -> None:
    truncated = tmp_path / "best.ckpt"
    data = trained.best_ckpt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{truncated}.* truncated or corrupt"):
        load_compressor(truncated)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match=rf"{other} is not a compressor checkpoint"):
        load_compressor(other)
    with pytest.raises(InputMissingError, match=r"absent.ckpt"):
        load_compressor(tmp_path / "absent.ckpt")
    # a corrupt last.ckpt stops a resume before any training
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"run/last.ckpt is truncated or corrupt"):
        fit_compressor(table, split, tiny_config(), out, tmp_root=tmp_path / ".tmp")


def test_incompatible_checkpoints_are_named(trained: CompressorResult, tmp_path: Path) -> None:
    ckpt = torch.load(trained.best_ckpt, weights_only=True)
    hp = ckpt["hyper_parameters"]
    three_bins = tmp_path / "three_bins.ckpt"
    record = dict(hp["norm_stats"])
    record["tile_mean"], record["tile_std"] = record["tile_mean"][:3], record["tile_std"][:3]
    torch.save({**ckpt, "hyper_parameters": {**hp, "norm_stats": record}}, three_bins)
    with pytest.raises(ValueError, match=rf"{three_bins} is incompatible: norm stats are for 3"):
        load_compressor(three_bins)
    wider = tmp_path / "wider.ckpt"
    config = {**hp["config"], "head_hidden": 64}
    torch.save({**ckpt, "hyper_parameters": {**hp, "config": config}}, wider)
    with pytest.raises(ValueError, match=rf"(?s){wider} is incompatible: .*size mismatch"):
        load_compressor(wider)
    unknown = tmp_path / "unknown.ckpt"
    config = {**hp["config"], "dropout": 0.1}
    torch.save({**ckpt, "hyper_parameters": {**hp, "config": config}}, unknown)
    with pytest.raises(ValueError, match=rf"{unknown} is incompatible: unknown .*'dropout'"):
        load_compressor(unknown)


def test_split_of_another_table_is_refused(tmp_path: Path, table: TileTable) -> None:
    other = make_split(toy_table(n_sims=15).sim_id)
    with pytest.raises(ValueError, match=r"split made for 180 rows"):
        fit_compressor(table, other, tiny_config(), tmp_path / "run", tmp_root=tmp_path / ".tmp")


def test_copy_of_run_dir_keeps_working(trained: CompressorResult, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(trained.out_dir, tmp_path / "copy"))
    module = load_compressor(copy / "best.ckpt")
    assert module.cfg == tiny_config()
