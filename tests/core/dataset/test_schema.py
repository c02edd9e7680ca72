"""One source of truth for a row: configuration names, columns, types and the row hash."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pytest

from lensing_core.dataset.schema import (
    COLUMNS,
    CONFIG_NAMES,
    PARAM_COLUMNS,
    arrow_schema,
    config_name,
    features,
    new_row_hash,
    parse_config_name,
    tile_shape,
    update_row_hash,
)
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE


def test_fifteen_configurations_named_lmax_noise() -> None:
    assert len(CONFIG_NAMES) == 15
    assert len(set(CONFIG_NAMES)) == 15
    assert CONFIG_NAMES[0] == "lmax_200_noiseless"
    assert "lmax_600_des_y3" in CONFIG_NAMES
    for lmax in LMAX_TO_NSIDE:
        for noise in NOISE_LEVELS:
            name = config_name(lmax, noise)
            assert name == f"lmax_{lmax}_{noise}"
            assert parse_config_name(name) == (lmax, noise)


@pytest.mark.parametrize(("lmax", "noise"), [(300, "des_y3"), (600, "euclid"), (600, "noisy")])
def test_unknown_lmax_or_noise_level_is_an_error(lmax: int, noise: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        config_name(lmax, noise)


@pytest.mark.parametrize("name", ["lmax_300_des_y3", "lmax_600", "600_des_y3", "lmax_x_des_y3"])
def test_unknown_configuration_name_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match="unknown configuration"):
        parse_config_name(name)


@pytest.mark.parametrize("lmax", sorted(LMAX_TO_NSIDE))
def test_features_and_arrow_schema(lmax: int) -> None:
    n = LMAX_TO_NSIDE[lmax]
    feats = features(lmax)
    assert list(feats) == list(COLUMNS)
    assert feats["kappa"] == datasets.Array3D(shape=(4, n, n), dtype="float32")
    assert tile_shape(lmax) == (4, n, n)
    schema = arrow_schema(lmax)
    assert schema.names == list(COLUMNS)
    for name in ("sim_id", "noise_realization", "orientation_id", "tile_id", "lmax"):
        assert schema.field(name).type == pa.int32()
    assert schema.field("noise_level").type == pa.string()
    for name in PARAM_COLUMNS:
        assert schema.field(name).type == pa.float64()
    kappa_type = schema.field("kappa").type
    assert isinstance(kappa_type, pa.ExtensionType)
    assert kappa_type.storage_type == pa.list_(pa.list_(pa.list_(pa.float32())))
    assert b"huggingface" in schema.metadata
    # the features a reader recovers from the schema alone are the same
    assert datasets.Features.from_arrow_schema(schema) == feats


def test_parameter_columns_are_the_spec_eight() -> None:
    assert PARAM_COLUMNS == ("Omega_m", "sigma_8", "S8", "w", "h", "n_s", "Omega_b", "m_nu")


def _rows(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kappa = rng.standard_normal((n_rows, 4, 8, 8)).astype(np.float32)
    ids = np.stack(
        [
            np.full(n_rows, 5),
            np.arange(n_rows) // 12,
            np.arange(n_rows) // 4 % 3,
            np.arange(n_rows) % 4,
            np.full(n_rows, 200),
        ],
        axis=1,
    )
    params = rng.uniform(size=(n_rows, len(PARAM_COLUMNS)))
    return kappa, ids, params


def test_row_hash_depends_on_rows_not_on_how_they_are_fed(rng: np.random.Generator) -> None:
    kappa, ids, params = _rows(rng, 12)
    whole = new_row_hash(200, "des_y3")
    update_row_hash(whole, kappa, ids, "des_y3", params)
    pieces = new_row_hash(200, "des_y3")
    update_row_hash(pieces, kappa[:5], ids[:5], "des_y3", params[:5])
    update_row_hash(pieces, kappa[5:], ids[5:], "des_y3", params[5:])
    assert whole.hexdigest() == pieces.hexdigest()

    changed = kappa.copy()
    changed[7, 2, 3, 4] += 1e-6
    other = new_row_hash(200, "des_y3")
    update_row_hash(other, changed, ids, "des_y3", params)
    assert other.hexdigest() != whole.hexdigest()

    other_config = new_row_hash(200, "lsst_y10")
    update_row_hash(other_config, kappa, ids, "des_y3", params)
    assert other_config.hexdigest() != whole.hexdigest()
