"""Versions of a simulation's inputs, the content-hash cache, and discovery of sims."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lensing_core.config import PlatformSettings
from lensing_core.io import FileHashCache
from lensing_core.products import make_kappa
from lensing_core.sims.catalog import FIDUCIAL_PARAMS, SimCatalog, synthetic_catalog
from lensing_core.sims.inputs import input_version
from lensing_core.sims.sources import GowerStreetSource, KappaNpzSource, SyntheticSource
from lensing_core.storage import DataRoot
from tests.fixtures.gower import write_gower_sim

TABLE_HEAD = (
    ",,,Cosmological parameters,,,,,,,Derived parameters,,,\n"
    "Serial Number,Run,Job,Omega_m,sigma_8,w,Omega_b little_h^2,little_h,n_s,m_nu,Omega_b,"
    "Comment,RunTime (hours),WhereRun\n"
)


def _row(sim: int, p: dict, sigma_8: float | None = None) -> str:
    s8 = p["sigma_8"] if sigma_8 is None else sigma_8
    return (
        f"{sim},C,{sim},{p['Omega_m']},{s8},{p['w']},{p['Omega_bh2']},{p['h']},{p['n_s']},"
        f"{p['m_nu']},{p['Omega_b']},,1,here\n"
    )


def _write_npz(directory: Path, sim: int, scale: float = 1.0) -> Path:
    folder = directory / f"sim{sim:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    maps = scale * np.random.default_rng(sim).normal(0, 0.01, (4, 12 * 16**2))
    np.savez(folder / "kappa_maps.npz", **{f"kappa_bin{i}": m for i, m in enumerate(maps)})
    return folder / "kappa_maps.npz"


def test_synthetic_version_follows_recipe_and_parameters() -> None:
    catalog = synthetic_catalog(110)
    source = SyntheticSource(catalog, nside=64)
    v109 = input_version(source, 109)
    assert len(v109) == 24
    assert input_version(source, 109) == v109
    assert input_version(source, 108) != v109
    assert input_version(SyntheticSource(catalog, nside=128), 109) != v109
    params = dict(catalog[109])
    params["sigma_8"] += 0.01
    changed = SimCatalog({109: params}, name="other")
    assert input_version(SyntheticSource(changed, nside=64), 109) != v109
    assert source.input_files(109) == []


def test_synthetic_version_follows_shift_recipe_and_recipe_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shift recipe and the recipe version are in the settings the version hashes."""
    from lensing_core.sims import synthetic

    catalog = synthetic_catalog(110)
    source = SyntheticSource(catalog, nside=64)
    described = source.describe()
    assert described["shift"] == "hilbert2011_scaled"
    assert described["recipe_version"] == synthetic.SYNTHETIC_RECIPE_VERSION == "2"
    version = input_version(source, 109)
    versions = {
        input_version(SyntheticSource(catalog, nside=64, shift=shift), 109)
        for shift in synthetic.SHIFT_CHOICES
    }
    assert len(versions) == len(synthetic.SHIFT_CHOICES)
    assert version in versions
    monkeypatch.setattr(synthetic, "SYNTHETIC_RECIPE_VERSION", "1")
    assert source.describe()["recipe_version"] == "1"
    assert input_version(source, 109) != version


def test_kappa_npz_version_is_the_file_content(tmp_path: Path) -> None:
    path = _write_npz(tmp_path, 3)
    _write_npz(tmp_path, 4)
    nan = dict.fromkeys(FIDUCIAL_PARAMS, float("nan"))
    source = KappaNpzSource(tmp_path, SimCatalog({3: nan, 4: nan}, name="files"))
    cache = FileHashCache()
    v3, v4 = input_version(source, 3, cache=cache), input_version(source, 4, cache=cache)
    assert v3 != v4
    assert source.load(3)[1]["band_limit"] is None  # full resolution, as far as is known
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same content
    assert input_version(source, 3, cache=FileHashCache()) == v3
    _write_npz(tmp_path, 3, scale=2.0)
    assert input_version(source, 3, cache=cache) != v3
    (tmp_path / "sim00004" / "kappa_maps.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"input of sim 4 is missing: .*sim00004"):
        input_version(source, 4)


def test_hash_cache_rereads_only_changed_files(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    cache_file = tmp_path / "cache" / "hashes.json"
    cache = FileHashCache(cache_file, tmp_root=tmp_path / ".tmp")
    first = cache.sha256(path)
    cache.save()
    assert cache_file.is_file()
    reloaded = FileHashCache(cache_file, tmp_root=tmp_path / ".tmp")
    entry = reloaded._entries[str(path.resolve())]
    entry[2] = "remembered"  # proves the next call does not read the file again
    assert reloaded.sha256(path) == "remembered"
    path.write_bytes(b"y" * 1001)
    assert reloaded.sha256(path) not in (first, "remembered")
    cache_file.write_text("{not json")
    assert FileHashCache(cache_file).sha256(path) == reloaded.sha256(path)


def test_gower_street_version_and_discovery(tmp_path: Path) -> None:
    params = dict(FIDUCIAL_PARAMS)
    sims_dir = tmp_path / "gower"
    write_gower_sim(sims_dir / "sim00109", params)
    write_gower_sim(sims_dir / "sim00007", params)
    (sims_dir / "sim00500").mkdir()  # no row in the table: left out
    table = tmp_path / "runs.csv"
    table.write_text(TABLE_HEAD + _row(7, params) + _row(109, params) + _row(8, params))
    settings = PlatformSettings.from_env(
        {
            "LENSING_SOURCE": "gower_street",
            "LENSING_SIMS_DIR": str(sims_dir),
            "LENSING_CATALOG_CSV": str(table),
        }
    )
    assert settings.kappa_source().discover() == [7, 109]  # 8 has a row, no directory
    source = settings.kappa_source()
    assert isinstance(source, GowerStreetSource)
    files = source.input_files(109)
    assert {p.name for p in files} >= {"control.par", "z_values.txt"}
    assert any(p.name.endswith(".lightcone.npy") for p in files)
    before = input_version(source, 109)
    shell = next(p for p in files if p.name.endswith(".lightcone.npy"))
    counts = np.load(shell)
    counts[0] += 1
    np.save(shell, counts)
    assert input_version(source, 109) != before
    # a changed row of the parameter table changes the version too
    v7 = input_version(source, 7)
    table.write_text(TABLE_HEAD + _row(7, params, 0.9) + _row(109, params) + _row(8, params))
    assert input_version(settings.kappa_source(), 7) != v7
    write_gower_sim(sims_dir / "sim00008", params)
    assert settings.kappa_source().discover() == [7, 8, 109]


def test_kappa_file_records_the_input_version(tmp_path: Path) -> None:
    source = SyntheticSource(synthetic_catalog(110), nside=32)
    root = DataRoot(tmp_path)
    meta = make_kappa(root, source, 109).record
    assert meta["input_version"] == input_version(source, 109)
    provenance = meta["provenance"]
    assert (provenance["shift"], provenance["band_limit"]) == ("hilbert2011_scaled", 64)
    _, stored = root.read_kappa(109)
    assert stored["input_version"] == meta["input_version"]
