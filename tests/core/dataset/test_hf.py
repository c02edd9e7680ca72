"""The local Hugging Face revision: card, offline loading, content-derived id, optional push."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import ClassVar

import datasets
import numpy as np
import pytest
import yaml

from lensing_core.dataset import hf
from lensing_core.dataset.hf import (
    RevisionInfo,
    build_dataset_card,
    discover_configs,
    load_local_config,
    push_revision,
    write_hf_revision,
)
from lensing_core.dataset.parquet import (
    ShardReport,
    write_config_shards,
)
from lensing_core.dataset.schema import PARAM_COLUMNS
from lensing_core.sims.catalog import SimCatalog
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.storage import DataRoot, RevisionDir
from tests.core.dataset.conftest import LMAX, N_PIX, SIMS

CONFIGS = ("lmax_200_noiseless", "lmax_200_des_y3")
TOKEN = "hf_TESTtokenNEVERwrittenANYWHERE0123456789"


def _build(root: DataRoot, catalog: SimCatalog, **shard_kwargs: int) -> RevisionInfo:
    for noise in ("noiseless", "des_y3"):
        write_config_shards(root, catalog, LMAX, noise, SIMS, **shard_kwargs)
    return write_hf_revision(
        root.hf_dataset.dir,
        tmp_root=root.tmp_root,
        scheme="belts",
        noise_convention="per_component",
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "network access attempted"
        raise AssertionError(msg)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_card_lists_configs_features_and_conventions(
    data_root: DataRoot, catalog: SimCatalog
) -> None:
    info = _build(data_root, catalog)
    text = info.card_path.read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert [c["config_name"] for c in front["configs"]] == list(CONFIGS)
    for entry in front["configs"]:
        name = entry["config_name"]
        assert entry["data_files"] == [{"split": "train", "path": f"data/{name}/train-*.parquet"}]
    by_name = {e["config_name"]: e for e in front["dataset_info"]}
    assert set(by_name) == set(CONFIGS)
    for entry in by_name.values():
        kappa = next(f for f in entry["features"] if f["name"] == "kappa")
        assert kappa["dtype"] == {"array3_d": {"shape": [4, N_PIX, N_PIX], "dtype": "float32"}}
    assert by_name["lmax_200_noiseless"]["splits"][0]["num_examples"] == 36
    assert by_name["lmax_200_des_y3"]["splits"][0]["num_examples"] == 36 * 4  # 4 realisations
    body = text.split("---\n", 2)[2]
    assert "| `lmax_200_des_y3` | 200 | 4 x 128 x 128 | des_y3 | 4 | 144 | 3 |" in body
    assert "| `lmax_200_noiseless` | 200 | 4 x 128 x 128 | noiseless | 1 | 36 | 3 |" in body
    assert "`noise_realization` r = 0 .. R-1" in body
    assert info.revision_id in body
    assert "`belts`" in body
    assert "sigma_e / sqrt(n_eff A_pix)" in body
    for column in (
        "kappa",
        "sim_id",
        "noise_realization",
        "orientation_id",
        "tile_id",
        *PARAM_COLUMNS,
    ):
        assert f"`{column}`" in body
    assert "lmax_600_des_y3" in body  # listed as not in this revision
    record = json.loads(RevisionDir(info.path).record.read_text())
    assert record["revision_id"] == info.revision_id
    assert set(record["configs"]) == set(CONFIGS)
    assert info.to_metadata()["missing_configs"] == [
        c for c in info.missing_configs if c not in CONFIGS
    ]
    assert len(info.missing_configs) == 13


def test_legacy_card_names_the_legacy_conventions(data_root: DataRoot, catalog: SimCatalog) -> None:
    report = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS)
    text = build_dataset_card(
        {report.config: report}, scheme="legacy", noise_convention="legacy", license_id="cc-by-4.0"
    )
    assert "license: cc-by-4.0" in text
    assert "sqrt(2 n_eff A_pix)" in text
    assert "`legacy`" in text
    with pytest.raises(ValueError, match="scheme"):
        build_dataset_card({report.config: report}, scheme="zyz", noise_convention="legacy")


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("noise", ["noiseless", "des_y3"])
def test_load_dataset_offline_gives_array3d_and_catalog_values(
    data_root: DataRoot, catalog: SimCatalog, tmp_path: Path, noise: str
) -> None:
    info = _build(data_root, catalog)
    ds = load_local_config(info.path, f"lmax_{LMAX}_{noise}", cache_dir=tmp_path / "hf-cache")
    n_real = 1 if noise == "noiseless" else 4
    per_sim = 12 * n_real
    assert ds.num_rows == per_sim * len(SIMS)
    assert ds.features["kappa"] == datasets.Array3D(shape=(4, N_PIX, N_PIX), dtype="float32")
    assert ds.features["sim_id"] == datasets.Value("int32")
    batch = ds.with_format("numpy")[:]
    assert batch["kappa"].shape == (per_sim * len(SIMS), 4, N_PIX, N_PIX)
    assert batch["kappa"].dtype == np.float32
    row = ds.with_format("numpy")[13]
    assert row["kappa"].shape == (4, N_PIX, N_PIX)
    assert row["kappa"].dtype == np.float32
    for i, sim_id in enumerate(SIMS):
        tiles = data_root.read_tiles(sim_id, LMAX, (noise,), realizations=True)[0][noise]
        np.testing.assert_array_equal(
            batch["kappa"][per_sim * i : per_sim * (i + 1)], tiles.reshape(-1, 4, N_PIX, N_PIX)
        )
    np.testing.assert_array_equal(batch["sim_id"], np.repeat(SIMS, per_sim))
    realization = np.tile(np.repeat(np.arange(n_real), 12), 3)
    np.testing.assert_array_equal(batch["noise_realization"], realization)
    orientation = np.tile(np.repeat([0, 1, 2], 4), 3 * n_real)
    np.testing.assert_array_equal(batch["orientation_id"], orientation)
    np.testing.assert_array_equal(batch["tile_id"], np.tile(np.arange(4), 9 * n_real))
    assert set(batch["noise_level"].tolist()) == {noise}
    # the stored parameters are the catalog's float64 values exactly; datasets' numpy
    # formatter hands float columns out as float32 (its default), so compare to that rounding
    arrow = ds.with_format("arrow")[:]
    for name in PARAM_COLUMNS:
        expected = np.repeat([catalog[s][name] for s in SIMS], per_sim)
        assert arrow.column(name).type == "double"
        np.testing.assert_array_equal(arrow.column(name).to_numpy(), expected)
        np.testing.assert_array_equal(batch[name], expected.astype(np.float32))


def test_load_refuses_a_path_that_is_not_a_local_revision(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a local dataset revision"):
        load_local_config(tmp_path / "owner" / "name", "lmax_200_des_y3")


def test_revision_id_is_content_derived(
    data_root: DataRoot, catalog: SimCatalog, tile_source: DataRoot, tmp_path: Path
) -> None:
    first = _build(data_root, catalog)
    again = write_hf_revision(
        first.path, tmp_root=data_root.tmp_root, scheme="belts", noise_convention="per_component"
    )
    assert again.revision_id == first.revision_id
    # another root, rebuilt from the same tiles with other shard boundaries: same content, same id
    other = DataRoot(tmp_path / "other")
    shutil.copytree(tile_source.root / "tiles", other.root / "tiles")
    resharded = _build(other, catalog, max_shard_bytes=2_000_000)
    assert resharded.revision_id == first.revision_id
    assert (resharded.path / "README.md").read_text() == first.card_path.read_text()
    # one tile changed: another id
    by_noise, meta = other.read_tiles(SIMS[0], LMAX, NOISE_LEVELS)
    by_noise["des_y3"][11, 3, 0, 0] *= 1.001
    other.write_tiles(SIMS[0], LMAX, by_noise, meta)
    changed = _build(other, catalog)
    assert changed.revision_id != first.revision_id
    assert (
        changed.configs["lmax_200_noiseless"].content_hash
        == first.configs["lmax_200_noiseless"].content_hash
    )


def test_revision_checks_what_it_describes(data_root: DataRoot, catalog: SimCatalog) -> None:
    report = write_config_shards(data_root, catalog, LMAX, "des_y3", SIMS)
    hf_dir = data_root.hf_dataset.dir
    assert discover_configs(hf_dir) == {report.config: report.out_dir}
    with pytest.raises(ValueError, match="scheme"):
        write_hf_revision(
            hf_dir, tmp_root=data_root.tmp_root, scheme="legacy", noise_convention="per_component"
        )
    elsewhere = write_config_shards(
        data_root, catalog, LMAX, "noiseless", SIMS, out_dir=data_root.root / "x" / "y"
    )
    with pytest.raises(ValueError, match="card points at"):
        write_hf_revision(
            hf_dir,
            {elsewhere.config: elsewhere},
            tmp_root=data_root.tmp_root,
            scheme="belts",
            noise_convention="per_component",
        )
    with pytest.raises(FileNotFoundError, match="manifest"):
        write_hf_revision(
            hf_dir,
            {"lmax_200_noiseless": data_root.shards(LMAX, "noiseless").dir},
            tmp_root=data_root.tmp_root,
            scheme="belts",
            noise_convention="per_component",
        )
    stale = ShardReport(**{**report.__dict__, "content_hash": "0" * 64})
    with pytest.raises(ValueError, match="differ from the report"):
        write_hf_revision(
            hf_dir,
            {stale.config: stale},
            tmp_root=data_root.tmp_root,
            scheme="belts",
            noise_convention="per_component",
        )


class _ExplodingApi:
    def __init__(self, *args: object, **kwargs: object) -> None:
        msg = "HfApi must not be created without a repo id and a token"
        raise AssertionError(msg)


def test_no_push_without_repo_id_or_token(
    data_root: DataRoot, catalog: SimCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    info = _build(data_root, catalog)
    monkeypatch.setattr(huggingface_hub, "HfApi", _ExplodingApi)
    for repo_id, token in [(None, TOKEN), ("me/lensing", None), ("me/lensing", ""), (None, None)]:
        result = push_revision(info.path, repo_id=repo_id, token=token)
        assert result.pushed is False
        assert "not pushed" in result.reason
        assert TOKEN not in json.dumps(result.to_metadata())


class _RecordingApi:
    calls: ClassVar[list[tuple[str, dict]]] = []
    fail_with: ClassVar[str | None] = None

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(self, repo_id: str, **kwargs: object) -> None:
        type(self).calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs: object) -> object:
        type(self).calls.append(("upload_folder", {"token": self.token, **kwargs}))
        if type(self).fail_with:
            raise PermissionError(type(self).fail_with)

        class Commit:
            commit_url = "https://huggingface.co/datasets/me/lensing/commit/abc"

        return Commit()


def test_push_passes_the_token_only_to_the_client_and_never_writes_it(
    data_root: DataRoot,
    catalog: SimCatalog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import huggingface_hub

    caplog.set_level("DEBUG")
    info = _build(data_root, catalog)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingApi)
    monkeypatch.setattr(_RecordingApi, "calls", [])
    result = push_revision(info.path, repo_id="me/lensing", token=TOKEN, revision=info.revision_id)
    assert result.pushed is True
    assert result.commit_url.endswith("/commit/abc")
    upload = dict(_RecordingApi.calls)["upload_folder"]
    assert upload["token"] == TOKEN
    assert upload["folder_path"] == str(info.path)
    assert upload["repo_type"] == "dataset"
    assert info.revision_id in upload["commit_message"]
    assert TOKEN not in repr(result)
    assert TOKEN not in json.dumps(result.to_metadata())
    assert TOKEN not in json.dumps(info.to_metadata())

    # a refusal that quotes the token: the error is redacted and carries no chained exception
    monkeypatch.setattr(_RecordingApi, "fail_with", f"401: bad token {TOKEN}")
    with pytest.raises(RuntimeError, match="failed") as err:
        push_revision(info.path, repo_id="me/lensing", token=TOKEN)
    assert TOKEN not in str(err.value)
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__

    assert TOKEN not in caplog.text
    token_bytes = TOKEN.encode()
    files = [p for p in data_root.root.rglob("*") if p.is_file()]
    assert any(p.name == "README.md" for p in files)
    assert [p for p in files if token_bytes in p.read_bytes()] == []


def test_module_never_reads_a_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The token comes from the caller: an HF_TOKEN in the environment alone pushes nothing."""
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub, "HfApi", _ExplodingApi)
    assert push_revision(tmp_path, repo_id="me/lensing", token=None).pushed is False
    assert "environ" not in hf.push_revision.__code__.co_names
