"""Batches of partitions: the fused tiles of one sim, and each unit's outcome kept apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensing_core.batch import Call, kappa_call, run_batch, tiles_call
from lensing_core.io import InputMissingError
from lensing_core.products import make_kappa, make_tiles, make_tiles_batch
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.sky.tiles import TilingOptions
from lensing_core.storage import DataRoot

NSIDE = 256  # synthetic maps band-limited at 2 nside = 512: tiles at lmax 200 and 400
LMAXES = [200, 400]
OPTIONS = TilingOptions(nthreads=1, noise_realizations=2)


@pytest.fixture(scope="module")
def root_with_kappa(tmp_path_factory: pytest.TempPathFactory) -> DataRoot:
    """A data root with the kappa maps of synthetic sim 109 at nside 256."""
    root = DataRoot(tmp_path_factory.mktemp("batch") / "data")
    make_kappa(root, SyntheticSource(synthetic_catalog(110), nside=NSIDE), 109, OPTIONS)
    return root


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files if key != "metadata"}


def test_fused_lmax_give_the_bytes_of_one_lmax_at_a_time(
    root_with_kappa: DataRoot, tmp_path: Path
) -> None:
    """All lmax of a sim with one rotation per orientation: the same tiles as one by one."""
    fused = make_tiles_batch(root_with_kappa, 109, LMAXES, OPTIONS)
    assert sorted(fused) == LMAXES
    fused_arrays = {}
    for lmax, result in fused.items():
        assert not isinstance(result, Exception), result
        assert result.record["batch_lmax"] == LMAXES
        fused_arrays[lmax] = _arrays(result.path)
    for lmax in LMAXES:
        alone = make_tiles(root_with_kappa, 109, lmax, OPTIONS)
        assert alone.record["batch_lmax"] == [lmax]
        arrays = _arrays(alone.path)
        assert arrays.keys() == fused_arrays[lmax].keys()
        for key, array in arrays.items():
            np.testing.assert_array_equal(array, fused_arrays[lmax][key], err_msg=f"{lmax} {key}")


def test_an_lmax_above_the_band_limit_fails_alone(root_with_kappa: DataRoot) -> None:
    """lmax 600 is above the maps' band limit (512): it fails with its reason, 200 is made."""
    outcomes = make_tiles_batch(root_with_kappa, 109, [200, 600], OPTIONS)
    assert not isinstance(outcomes[200], Exception)
    assert isinstance(outcomes[600], ValueError)
    message = str(outcomes[600])
    for part in ("sim 109", "lmax 600", "band-limited"):
        assert part in message
    assert str(root_with_kappa.kappa_path(109)) in message


def test_missing_kappa_fails_every_lmax_of_that_sim(tmp_path: Path) -> None:
    root = DataRoot(tmp_path / "data")
    outcomes = make_tiles_batch(root, 7, [200, 400], OPTIONS, missing_hint="make them first")
    assert set(outcomes) == {200, 400}
    for err in outcomes.values():
        assert isinstance(err, InputMissingError)
        assert "sim00007.npz" in str(err)
        assert "make them first" in str(err)


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"unit {x} is bad")
    return 10 * x


def test_one_failing_unit_does_not_stop_the_others_in_process() -> None:
    outcome = run_batch({x: Call(_fails_on_three, (x,)) for x in range(1, 6)})
    assert outcome.where == "in process"
    assert set(outcome.failed) == {3}
    assert str(outcome.failed[3]) == "unit 3 is bad"
    assert {k: v for k, v in outcome.outcomes.items() if k != 3} == {1: 10, 2: 20, 4: 40, 5: 50}


def test_batch_units_run_on_a_dask_cluster(tmp_path: Path) -> None:
    """Kappa and tiles units on a 2-worker local cluster: files written, failures kept apart."""
    from distributed import Client, LocalCluster

    root = DataRoot(tmp_path / "data")
    source = SyntheticSource(synthetic_catalog(110), nside=128)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        kappa = run_batch(
            {s: Call(kappa_call, (root, source, s, OPTIONS)) for s in (101, 102, 999)},
            client,
            where="test cluster",
        )
        assert kappa.where == "test cluster"
        assert set(kappa.failed) == {999}, kappa.failed
        assert "999" in str(kappa.failed[999])
        for sim in (101, 102):
            out = kappa.outcomes[sim]
            assert isinstance(out, dict)
            assert out["metadata"]["path"] == root.kappa_path(sim)
            assert set(out["checks"]) == {
                "maps_finite",
                "mean_near_zero",
                "variance_increases_with_bin",
                "spectra_match_theory",
            }
            assert out["checks"]["maps_finite"]["passed"]
        tiles = run_batch(
            {s: Call(tiles_call, (root, s, [200], OPTIONS)) for s in (101, 103)}, client
        )
    assert tiles.failed == {}
    assert isinstance(tiles.outcomes[103], dict)
    assert isinstance(tiles.outcomes[103][200], InputMissingError)  # no kappa maps of 103
    made = tiles.outcomes[101][200]
    assert isinstance(made, dict)
    assert made["path"] == root.tiles_path(101, 200)
    scratch = tmp_path / "data" / ".tmp"
    assert not scratch.exists() or not any(scratch.iterdir())  # nothing half-written left
