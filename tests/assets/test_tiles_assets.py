"""Kappa and tile partitions through Dagster: end to end, and every bad input."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from lensing_assets.defs.kappa import kappa_maps
from lensing_assets.defs.resources import platform_resources
from lensing_assets.defs.tiles import tiles
from lensing_core.sims.sources import SourceSettings
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import KAPPA_KEYS, DataRoot
from tests.fixtures.dagster import ephemeral_instance, settings_for


def _materialize(
    asset: dg.AssetsDefinition, key: str, resources: dict
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [asset],
        partition_key=key,
        resources=resources,
        instance=ephemeral_instance(),
        raise_on_error=False,
    )


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    return "\n".join(e.message for e in [error, error.cause] if e is not None)


def _visible_files(root: Path) -> list[Path]:
    """Files a reader would see under the data-root layout (temporaries excluded)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts)


def _write_kappa(root: Path, sim_id: int, maps: np.ndarray) -> Path:
    return DataRoot(root).write_kappa(sim_id, maps, {"nside": int((maps.shape[1] / 12) ** 0.5)})


def test_one_tile_partition_end_to_end(data_root: Path, test_resources: dict) -> None:
    """kappa_maps[109] then tiles[109|200] land in the data-root layout with their metadata."""
    kappa_result = _materialize(kappa_maps, "109", test_resources)
    assert kappa_result.success
    kappa_meta = kappa_result.asset_materializations_for_node("kappa_maps")[0].metadata
    assert kappa_meta["nside"].value == 128
    assert kappa_meta["params"].data["Omega_m"] == pytest.approx(0.3006605338)

    result = _materialize(tiles, "109|200", test_resources)
    assert result.success
    assert _visible_files(data_root) == [
        data_root / "kappa" / "sim00109.npz",
        data_root / "reports" / "kappa_checks" / "sim00109_spectra.png",  # its checks ran too
        data_root / "tiles" / "lmax200" / "sim00109.npz",
    ]
    by_noise, file_meta = DataRoot(data_root).read_tiles(109, 200, NOISE_LEVELS)
    for level in NOISE_LEVELS:
        assert by_noise[level].shape == (12, 4, 128, 128)
        assert by_noise[level].dtype == np.float32
        assert np.isfinite(by_noise[level]).all()
    # noise adds variance; the noiseless tiles carry the signal
    signal_std = by_noise["noiseless"].std()
    assert signal_std > 0
    assert by_noise["des_y3"].std() > by_noise["lsst_y10"].std() > signal_std

    meta = result.asset_materializations_for_node("tiles")[0].metadata
    assert meta["sky_coverage"].value >= 0.90
    assert meta["max_pairwise_overlap"].value <= 0.03
    assert set(meta["std_per_bin"].data) == set(NOISE_LEVELS)
    assert len(meta["pixel_noise_std_at_source_nside"].data["des_y3"]) == 4
    assert meta["pixel_noise_std_at_source_nside"].data["noiseless"] == [0.0] * 4
    assert meta["shapes"].data["des_y3"] == [12, 4, 128, 128]
    assert meta["source"].data["source"] == "synthetic"
    assert file_meta["lmax"] == 200


def test_missing_kappa_fails_with_the_command_that_makes_it(
    data_root: Path, test_resources: dict
) -> None:
    """No kappa file: one message that says so and gives the exact command."""
    message = _failure_message(_materialize(tiles, "109|600", test_resources))
    assert "kappa maps of sim 109 are missing" in message
    assert str(data_root / "kappa" / "sim00109.npz") in message
    assert "dagster asset materialize --select kappa_maps --partition 109" in message
    assert _visible_files(data_root) == []


def test_tiles_above_the_band_limit_fail(
    data_root: Path, test_resources: dict, rng: np.random.Generator
) -> None:
    """Maps band-limited below lmax fail the partition naming sim, band limit and lmax."""
    maps = rng.normal(size=(4, 12 * 128**2)) * 0.01
    provenance = {"source": "synthetic", "band_limit": 150}
    DataRoot(data_root).write_kappa(109, maps, {"nside": 128, "provenance": provenance})
    message = _failure_message(_materialize(tiles, "109|200", test_resources))
    assert "synthetic source's maps of sim 109 are band-limited at ell = 150" in message
    assert "below lmax 200" in message
    assert not (data_root / "tiles").exists()


def test_truncated_kappa_file(
    data_root: Path, test_resources: dict, rng: np.random.Generator
) -> None:
    """A truncated kappa file fails its partition naming the sim and file; nothing written."""
    path = _write_kappa(data_root, 109, rng.normal(size=(4, 12 * 128**2)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _failure_message(_materialize(tiles, "109|200", test_resources))
    assert "sim 109" in message
    assert str(path) in message
    assert "truncated or corrupt" in message
    assert not (data_root / "tiles").exists()


@pytest.mark.parametrize(
    ("maps_shape", "poison", "expected"),
    [
        ((4, 12 * 128**2), "nan", "NaN"),
        ((4, 12 * 64**2), None, "nside 64, too coarse for lmax 200"),
        ((4, 12 * 128**2 - 5), None, "is not a HEALPix map"),
    ],
    ids=["nan", "wrong-nside", "not-healpix"],
)
def test_bad_kappa_maps(
    data_root: Path,
    test_resources: dict,
    rng: np.random.Generator,
    maps_shape: tuple[int, int],
    poison: str | None,
    expected: str,
) -> None:
    """NaNs, a too-coarse nside or a non-HEALPix size: a clear error, no tile file."""
    maps = rng.normal(size=maps_shape) * 0.01
    if poison == "nan":
        maps[2, 17] = np.nan
    path = DataRoot(data_root).kappa_path(109)
    path.parent.mkdir(parents=True)
    np.savez(path, **{key: m for key, m in zip(KAPPA_KEYS, maps, strict=True)})
    message = _failure_message(_materialize(tiles, "109|200", test_resources))
    assert expected in message
    assert "sim 109" in message
    assert str(path) in message or "kappa maps" in message
    assert not (data_root / "tiles").exists()


def test_one_bad_partition_leaves_the_others_working(data_root: Path, test_resources: dict) -> None:
    """A corrupt sim 110 fails alone; sim 109 still materializes and its files stay intact."""
    assert _materialize(kappa_maps, "109", test_resources).success
    assert _materialize(tiles, "109|200", test_resources).success
    good = DataRoot(data_root).tiles_path(109, 200)
    before = good.read_bytes()
    bad = DataRoot(data_root).kappa_path(110)
    bad.write_bytes(b"not an npz file")
    assert not _materialize(tiles, "110|200", test_resources).success
    assert good.read_bytes() == before
    assert _materialize(tiles, "109|400", test_resources).success is False  # nside 128 < 256
    assert _materialize(tiles, "109|200", test_resources).success
    assert not DataRoot(data_root).tiles_path(110, 200).exists()


def test_sim_not_in_catalog(data_root: Path, test_resources: dict) -> None:
    """A sim outside the configured suite: Dagster refuses the key; the source names the sim."""
    with pytest.raises(dg.DagsterUnknownPartitionError, match="99999"):
        dg.materialize(
            [kappa_maps],
            partition_key="99999",
            resources=test_resources,
            instance=ephemeral_instance(),
        )
    small_settings = settings_for(data_root, source=SourceSettings(suite="1-5", nside=128))
    small = platform_resources(small_settings)
    with pytest.raises(KeyError, match="sim 109 is not in the catalog"):
        small_settings.kappa_source().load(109)
    message = _failure_message(_materialize(kappa_maps, "109", small))
    assert "sim 109 is not in the catalog" in message
    assert _visible_files(data_root) == []


@pytest.mark.parametrize(
    ("tiling", "expected"),
    [
        (TilingOptions(scheme="spiral"), "unknown orientation scheme 'spiral'"),
        (TilingOptions(noise_convention="half"), "unknown noise convention 'half'"),
    ],
)
def test_unknown_scheme_or_convention(
    data_root: Path,
    test_resources: dict,
    rng: np.random.Generator,
    tiling: TilingOptions,
    expected: str,
) -> None:
    """Unknown tiling options fail the partition with the option named; no tile file."""
    _write_kappa(data_root, 109, rng.normal(size=(4, 12 * 128**2)) * 0.01)
    message = _failure_message(_materialize(tiles, "109|200", {**test_resources, "tiling": tiling}))
    assert expected in message
    assert not (data_root / "tiles").exists()


def test_kappa_npz_source(data_root: Path, tmp_path: Path, rng: np.random.Generator) -> None:
    """The kappa_npz source reads sim00109/kappa_maps.npz; a missing sim fails naming the file."""
    source_dir = tmp_path / "cloud"
    (source_dir / "sim00109").mkdir(parents=True)
    maps = rng.normal(size=(4, 12 * 128**2)).astype(np.float32) * 0.01
    np.savez(source_dir / "sim00109" / "kappa_maps.npz", **dict(zip(KAPPA_KEYS, maps, strict=True)))
    resources = platform_resources(
        settings_for(data_root, source=SourceSettings(name="kappa_npz", kappa_dir=source_dir))
    )
    result = _materialize(kappa_maps, "109", resources)
    assert result.success
    written, meta = DataRoot(data_root).read_kappa(109)
    np.testing.assert_array_equal(written, maps)
    assert meta["provenance"]["source"] == "kappa_npz"
    assert len(meta["provenance"]["sha256"]) == 64
    assert _materialize(tiles, "109|200", resources).success

    (source_dir / "sim00109" / "kappa_maps.npz").unlink()
    message = _failure_message(_materialize(kappa_maps, "109", resources))
    assert str(source_dir / "sim00109" / "kappa_maps.npz") in message


def test_tiles_metadata_embeds_gallery_and_coverage_figures(
    data_root: Path, test_resources: dict
) -> None:
    """tiles[109|200] metadata shows the des_y3 tile gallery and the scheme's coverage figure."""
    assert _materialize(kappa_maps, "109", test_resources).success
    result = _materialize(tiles, "109|200", test_resources)
    assert result.success
    meta = result.asset_materializations_for_node("tiles")[0].metadata
    for key in ("tile_gallery", "coverage_figure"):
        text = meta[key].value
        assert text.startswith("![")
        assert "data:image/png;base64,iVBOR" in text
