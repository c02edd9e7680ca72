"""The bias test at the fiducial points: pulls of an unbiased toy, an injected offset, words."""

from __future__ import annotations

import numpy as np
import pytest

from lensing_core.inference.fiducial import (
    fiducial_bias,
    point_bias,
    projection_offset,
)

TRUTH = np.array([0.30, 0.80])
TILE_STD = np.array([0.03, 0.02])  # scatter of posterior means between tiles of one sky
REAL_STD = np.array([0.004, 0.003])  # scatter of a sky's mean beyond its tiles


def toy_point(
    rng: np.random.Generator,
    k: int,
    *,
    n_tiles: int = 12,
    offset: np.ndarray | None = None,
    real_std: np.ndarray = REAL_STD,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of k realizations of n_tiles tiles each, and their sim ids."""
    shift = np.zeros(2) if offset is None else offset
    sky = TRUTH + shift + real_std * rng.standard_normal((k, 2))  # (k, 2)
    mean = np.repeat(sky, n_tiles, axis=0) + TILE_STD * rng.standard_normal((k * n_tiles, 2))
    return mean, np.repeat(np.arange(20001, 20001 + k), n_tiles)


@pytest.mark.parametrize(
    ("k", "real_std", "max_std", "max_false_alarms"),
    [
        (1, np.zeros(2), 1.3, 0.03),
        (4, REAL_STD, 1.3, 0.012),
        (16, REAL_STD, 1.3, 0.01),
        # realization scatter as large as the tile scatter: 4 skies estimate it poorly, so the
        # pulls have Student-t tails (3 dof: std 1.7)
        (4, TILE_STD, 1.8, 0.08),
    ],
)
def test_pulls_of_an_unbiased_toy_are_consistent_with_zero(
    k: int, real_std: np.ndarray, max_std: float, max_false_alarms: float
) -> None:
    rng = np.random.default_rng(1000 + k)
    pulls, flags = [], []
    for _ in range(1000):
        mean, sim_id = toy_point(rng, k, real_std=real_std)
        b = point_bias(mean, TRUTH, sim_id, point="prior_centre")
        pulls.append(b.pull)
        flags.append(b.flagged)
    pulls_arr = np.array(pulls)
    assert np.all(np.abs(pulls_arr.mean(axis=0)) < 0.15)
    assert np.all(pulls_arr.std(axis=0) > 0.8)
    assert np.all(pulls_arr.std(axis=0) < max_std)
    assert np.array(flags).mean() < max_false_alarms


def test_an_injected_offset_is_flagged_and_measured() -> None:
    rng = np.random.default_rng(7)
    offset = np.array([0.0, -0.02])  # in S8: ten times the standard error of 4 x 12 tiles
    mean, sim_id = toy_point(rng, 4, offset=offset)
    b = point_bias(mean, TRUTH, sim_id, point="prior_centre")
    assert b.flagged.tolist() == [False, True]
    assert abs(b.offset[1] - offset[1]) < 3 * b.offset_err[1]
    assert b.pull[1] < -3
    assert b.n_realizations == 4
    assert b.n_tiles == (12,) * 4
    assert b.realization_std is not None


def test_one_realization_uses_the_tile_scatter_and_says_so() -> None:
    rng = np.random.default_rng(3)
    mean, sim_id = toy_point(rng, 1)
    b = point_bias(mean, TRUTH, sim_id, point="sim109")
    np.testing.assert_allclose(b.offset_err, b.tile_std / np.sqrt(12))
    assert b.realization_std is None
    assert "tile scatter only" in b.to_record()["error_counts"]


def test_projection_offset_tells_a_projection_effect_from_a_fault() -> None:
    rng = np.random.default_rng(11)
    shifted, ids_a = toy_point(rng, 4, offset=np.array([0.0, -0.04]))
    centred, ids_b = toy_point(rng, 4)
    ids_a = ids_a - 20001 + 10001
    mean = np.concatenate([shifted, centred])
    points = ["sim109"] * len(ids_a) + ["prior_centre"] * len(ids_b)
    biases = fiducial_bias(
        mean, np.tile(TRUTH, (len(mean), 1)), np.concatenate([ids_a, ids_b]), points
    )
    assert list(biases) == ["sim109", "prior_centre"]
    proj = projection_offset(biases)
    assert proj["available"]
    assert proj["fault"] == []
    assert proj["offset"][1] == pytest.approx(-0.04, abs=0.01)
    assert "projection effect" in proj["text"]
    assert "not a fault" in proj["text"]

    faulty = mean.copy()
    faulty[len(ids_a) :, 1] += 0.03  # the prior-centre point biased too
    proj = projection_offset(
        fiducial_bias(
            faulty, np.tile(TRUTH, (len(mean), 1)), np.concatenate([ids_a, ids_b]), points
        )
    )
    assert proj["fault"] == ["S8"]
    assert "fault of the pipeline" in proj["text"]


def test_a_single_point_has_no_projection_offset() -> None:
    rng = np.random.default_rng(5)
    mean, ids = toy_point(rng, 1)
    proj = projection_offset(fiducial_bias(mean, np.tile(TRUTH, (12, 1)), ids, ["sim109"] * 12))
    assert not proj["available"]
    assert proj["offset"] is None
    assert "cannot be measured" in proj["text"]


def test_bad_input_is_refused() -> None:
    rng = np.random.default_rng(0)
    mean, ids = toy_point(rng, 2)
    theta = np.tile(TRUTH, (len(mean), 1))
    theta[0, 0] += 0.1
    with pytest.raises(ValueError, match="share one truth"):
        point_bias(mean, theta, ids, point="sim109")
    with pytest.raises(ValueError, match="at least 2"):
        point_bias(mean[:13], TRUTH, ids[:13], point="sim109")
    bad = mean.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        point_bias(bad, TRUTH, ids, point="sim109")
