"""Tests of the augmentation groups: which pixel-grid symmetries are symmetries of a face.

A tile is one HEALPix base face in its NESTED ``(x, y)`` layout
(:func:`~lensing_core.sky.healpix.face_ring_indices`). A grid operation is a symmetry of the
face when it maps the pixel centres onto themselves with every angular distance unchanged.
"""

from __future__ import annotations

import functools

import healpy as hp
import numpy as np
import pytest
import torch

from lensing_core.config import PlatformSettings
from lensing_core.inference.compressor import SYMMETRY_ELEMENTS, augment_tiles
from lensing_core.inference.config import (
    SYMMETRY_GROUPS,
    CompressorConfig,
    NPEConfig,
    TrainingSettings,
    compressor_preset,
)
from lensing_core.sky.healpix import EQUATORIAL_FACES, face_ring_indices

FACE = SYMMETRY_GROUPS["face"]
NOT_FACE = tuple(name for name in SYMMETRY_GROUPS["square"] if name not in FACE)


@functools.cache
def face_distances(nside: int, face: int) -> np.ndarray:
    """Angular distances (rad) between the pixel centres of a face, shape ``(n*n, n*n)``."""
    ring = face_ring_indices(nside)[face]  # (n, n): tile[x, y] holds RING pixel ring[x, y]
    vec = np.stack(hp.pix2vec(nside, ring.ravel()), axis=-1)  # (n*n, 3)
    cross = np.linalg.norm(np.cross(vec[:, None, :], vec[None, :, :]), axis=-1)
    return np.arctan2(cross, vec @ vec.T)  # accurate at small and large angles alike


def moved_positions(name: str, n: int) -> np.ndarray:
    """Flat position each output pixel of the element reads, by applying it to a tile."""
    positions = torch.arange(n * n).reshape(1, 1, n, n)
    return SYMMETRY_ELEMENTS[name](positions).reshape(-1).numpy()


def distance_errors(nside: int, face: int, name: str) -> tuple[float, float]:
    """Largest change of a pairwise distance (rad), and as a fraction of the face diameter."""
    dist = face_distances(nside, face)
    moved = moved_positions(name, nside)
    error = float(np.abs(dist[np.ix_(moved, moved)] - dist).max())
    return error, error / float(dist.max())


@pytest.mark.parametrize("face", EQUATORIAL_FACES)
@pytest.mark.parametrize("nside", [16, 32])
def test_face_group_is_exact_on_equatorial_faces(nside: int, face: int) -> None:
    """The 4 elements of "face" keep every distance of the tiles' faces (faces 4..7)."""
    for name in FACE:
        error, _ = distance_errors(nside, face, name)
        assert error < 1e-12, (name, error)


@pytest.mark.parametrize("face", EQUATORIAL_FACES)
@pytest.mark.parametrize("nside", [16, 32])
def test_other_square_symmetries_distort_equatorial_faces(nside: int, face: int) -> None:
    """Turns by 90 degrees and single-axis flips stretch distances by 8.5-9% of the face."""
    for name in NOT_FACE:
        _, relative = distance_errors(nside, face, name)
        assert 0.08 < relative < 0.095, (name, relative)  # measured 0.0893 (16), 0.0864 (32)


@pytest.mark.parametrize("nside", [16, 32])
def test_polar_face_keeps_only_the_meridian_reflection(nside: int) -> None:
    """A polar face (0) has fewer symmetries: only the transpose; tiles are never polar."""
    assert EQUATORIAL_FACES == (4, 5, 6, 7)
    for name in ("identity", "transpose"):
        assert distance_errors(nside, 0, name)[0] < 1e-12
    for name in ("rot180", "antitranspose"):
        assert distance_errors(nside, 0, name)[1] > 0.1  # measured 0.105 (16), 0.110 (32)
    for name in NOT_FACE:
        assert distance_errors(nside, 0, name)[1] > 0.25  # measured 0.29


def test_face_corners_and_diagonals() -> None:
    """tile[x, y]: (0, 0) south corner, (n-1, n-1) north, (n-1, 0) east, (0, n-1) west."""
    nside = 128
    ring = face_ring_indices(nside)[4]
    corners = {"south": (0, 0), "north": (-1, -1), "east": (-1, 0), "west": (0, -1)}
    theta, phi = hp.pix2ang(nside, [ring[c] for c in corners.values()])
    lat, lon = 90 - np.degrees(theta), np.degrees(phi)
    np.testing.assert_allclose(lat, [-41.411, 41.411, 0, 0], atol=1e-3)
    np.testing.assert_allclose(lon, [0, 0, 44.648, 360 - 44.648], atol=1e-3)
    vec = np.array(hp.pix2vec(nside, [ring[c] for c in corners.values()])).T
    south_north = np.degrees(np.arccos(vec[0] @ vec[1]))
    east_west = np.degrees(np.arccos(vec[2] @ vec[3]))
    assert (round(south_north, 1), round(east_west, 1)) == (82.8, 89.3)


# --- augment_tiles draws the group's elements ---------------------------------------------------


def distinct_tiles(n_batch: int, n: int = 6) -> torch.Tensor:
    """Tiles ``(n_batch, 2, n, n)`` of distinct values, so each element gives a distinct tile."""
    return torch.arange(n_batch * 2 * n * n, dtype=torch.float32).reshape(n_batch, 2, n, n)


def drawn_elements(tiles: torch.Tensor, out: torch.Tensor) -> list[str]:
    """The element of :data:`SYMMETRY_ELEMENTS` that maps each tile onto its output."""
    names = []
    for before, after in zip(tiles, out, strict=True):
        matches = [n for n, op in SYMMETRY_ELEMENTS.items() if torch.equal(op(before), after)]
        assert len(matches) == 1, matches
        names.extend(matches)
    return names


@pytest.mark.parametrize("symmetries", ["face", "square"])
def test_augment_draws_every_element_of_the_group_and_no_other(symmetries: str) -> None:
    tiles = distinct_tiles(400)
    gen = torch.Generator().manual_seed(3)
    out = augment_tiles(tiles, symmetries=symmetries, generator=gen)
    counts = {name: 0 for name in SYMMETRY_ELEMENTS}
    for name in drawn_elements(tiles, out):
        counts[name] += 1
    group = SYMMETRY_GROUPS[symmetries]
    assert {name for name, count in counts.items() if count} == set(group)
    expected = len(tiles) / len(group)
    assert all(abs(counts[name] - expected) < 5 * expected**0.5 for name in group), counts


def test_face_is_the_default() -> None:
    tiles = distinct_tiles(64)
    out = augment_tiles(tiles, generator=torch.Generator().manual_seed(0))
    again = augment_tiles(tiles, symmetries="face", generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert set(drawn_elements(tiles, out)) <= set(FACE)


def augment_before_face_groups(
    tiles: torch.Tensor, *, rolls: bool, generator: torch.Generator
) -> torch.Tensor:
    """The implementation before the face group existed (the 8 square symmetries)."""
    n_batch, n_pix = tiles.shape[0], tiles.shape[-1]
    turns = torch.randint(0, 4, (n_batch,), generator=generator)
    flip = torch.rand(n_batch, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], tiles.flip(-1), tiles)
    for k in (1, 2, 3):
        sel = torch.nonzero(turns == k).squeeze(1)
        if len(sel):
            out[sel] = torch.rot90(out[sel], k, dims=(-2, -1))
    if rolls:
        shift = torch.randint(0, n_pix, (n_batch, 2), generator=generator)
        pix = torch.arange(n_pix)
        rows = (pix[None, :] - shift[:, :1]) % n_pix
        cols = (pix[None, :] - shift[:, 1:]) % n_pix
        out = out.gather(-2, rows[:, None, :, None].expand_as(out))
        out = out.gather(-1, cols[:, None, None, :].expand_as(out))
    return out


@pytest.mark.parametrize("rolls", [False, True])
def test_square_reproduces_the_earlier_draws(rolls: bool) -> None:
    """Same generator, same output as before: old seeded runs stay reproducible."""
    tiles = torch.randn(50, 3, 8, 8)
    new = augment_tiles(
        tiles, symmetries="square", rolls=rolls, generator=torch.Generator().manual_seed(7)
    )
    old = augment_before_face_groups(tiles, rolls=rolls, generator=torch.Generator().manual_seed(7))
    assert torch.equal(new, old)


def test_unknown_group_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown symmetries 'hexagon'; choose one of \('face'"):
        augment_tiles(torch.zeros(2, 1, 4, 4), symmetries="hexagon")


# --- settings ------------------------------------------------------------------------------------


def test_configs_default_to_face_and_reject_unknown_groups() -> None:
    assert CompressorConfig().symmetries == NPEConfig().symmetries == "face"
    assert CompressorConfig.from_dict({"symmetries": "square"}).symmetries == "square"
    with pytest.raises(ValueError, match=r"symmetries must be one of \('face', 'square'\)"):
        CompressorConfig(symmetries="hexagon")
    with pytest.raises(ValueError, match=r"NPEConfig: symmetries must be one of"):
        NPEConfig(symmetries="hexagon")


def test_settings_apply_the_group_to_both_models() -> None:
    settings = TrainingSettings.from_preset("cpu_demo", symmetries="square")
    assert (settings.compressor.symmetries, settings.npe.symmetries) == ("square", "square")
    assert settings.compressor.backbone == compressor_preset("cpu_demo").backbone
    default = PlatformSettings.from_env({}).training
    assert (default.compressor.symmetries, default.npe.symmetries) == ("face", "face")
    square = PlatformSettings.from_env({"LENSING_SYMMETRIES": "square"}).training
    assert (square.compressor.symmetries, square.npe.symmetries) == ("square", "square")
    with pytest.raises(ValueError, match=r"LENSING_SYMMETRIES='hexagon' is not one of"):
        PlatformSettings.from_env({"LENSING_SYMMETRIES": "hexagon"})
