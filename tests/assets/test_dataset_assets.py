"""Shards and the HF dataset revision through Dagster, from real tile partitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from lensing_assets.defs.dataset import hf_dataset, tile_shards
from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.tiles import tiles
from lensing_core.dataset.hf import HubTarget, load_local_config
from lensing_core.sims.catalog import synthetic_catalog
from tests.fixtures.dagster import ephemeral_instance

SIMS = (108, 109)


def _ok(asset: dg.AssetsDefinition, key: str | None, resources: dict) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [asset], partition_key=key, resources=resources, instance=ephemeral_instance()
    )
    assert result.success
    return result


@pytest.mark.slow
def test_shards_and_revision_from_tiles(
    data_root: Path, test_resources: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sims' tiles -> shards of two configurations -> a revision load_dataset reads."""
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_never_written")
    resources = {**test_resources, "hf_hub": HubTarget()}  # no repo id: no push
    for sim in SIMS:
        _ok(kappa_maps, str(sim), resources)
        _ok(tiles, f"{sim}|200", resources)
    reports = {}
    for noise in ("noiseless", "des_y3"):
        result = _ok(tile_shards, f"200|{noise}", resources)
        reports[noise] = result.asset_materializations_for_node("tile_shards")[0].metadata
    meta = reports["des_y3"]
    assert meta["rows"].value == 12 * 4 * len(SIMS)  # 4 noise realisations of every tile
    assert reports["noiseless"]["rows"].value == 12 * len(SIMS)
    assert meta["sims_included"].value == list(SIMS)
    # the other sims (791, and 31 realizations of the fiducial) have no tiles
    assert 822 - len(SIMS) == meta["n_sims_skipped"].value

    revision = _ok(hf_dataset, None, resources).asset_materializations_for_node("hf_dataset")[0]
    info = revision.metadata
    assert info["configs"].value == {"lmax_200_des_y3": 96, "lmax_200_noiseless": 24}
    assert info["push"].value["pushed"] is False
    assert len(info["revision_id"].value) >= 12

    ds = load_local_config(data_root / "hf_dataset", "lmax_200_des_y3").with_format("numpy")
    kappa = ds[:]["kappa"]
    assert kappa.shape == (96, 4, 128, 128)
    assert kappa.dtype == np.float32
    catalog = synthetic_catalog(110)
    np.testing.assert_allclose(ds[:]["S8"][:12], catalog[108]["S8"], rtol=1e-6)
    for path in (data_root / "hf_dataset").rglob("*"):
        if path.is_file():
            assert b"hf_secret_token_never_written" not in path.read_bytes()
    assert "hf_secret_token_never_written" not in str(info)


class _RefusingHub:
    """A Hub client that refuses the upload quoting the token, as a 401 response may."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(self, repo_id: str, **kwargs: object) -> None:
        return None

    def upload_folder(self, **kwargs: object) -> object:
        msg = f"401 Client Error: invalid token {self.token} for {kwargs['repo_id']}"
        raise PermissionError(msg)


@pytest.mark.slow
def test_the_token_reaches_no_file_event_or_metadata_through_the_asset(
    tmp_path: Path, data_root: Path, test_resources: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push through hf_dataset, refused with the token in the error: the token is nowhere."""
    import huggingface_hub

    token = "hf_asset_secret_9f3c1d"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RefusingHub)
    resources = {**test_resources, "hf_hub": HubTarget(repo_id="me/kappa")}
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("sims", ["109"])
        for asset, key in ((kappa_maps, "109"), (tiles, "109|200"), (tile_shards, "200|des_y3")):
            run = dg.materialize([asset], partition_key=key, resources=resources, instance=instance)
            assert run.success
        pushed = dg.materialize(
            [hf_dataset], resources=resources, instance=instance, raise_on_error=False
        )
        assert not pushed.success
        (failure,) = pushed.get_step_failure_events()
        error = failure.step_failure_data.error
        assert error is not None
        assert error.cause is not None
        assert "401 Client Error: invalid token" in error.cause.message  # the client was called
        entries = [
            entry
            for record in instance.get_run_records()
            for entry in instance.all_logs(record.dagster_run.run_id)
        ]
        assert entries
        assert not [entry for entry in entries if token in repr(entry)]
        metadata = [
            m.asset_materialization.metadata
            for m in instance.fetch_materializations(dg.AssetKey("tile_shards"), limit=10).records
            if m.asset_materialization is not None
        ]
        assert metadata
        assert token not in repr(metadata)
    for folder in (data_root, home):
        leaked = [p for p in folder.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
        assert leaked == []
    assert "invalid token *** for me/kappa" in error.cause.message  # redacted, not dropped
