"""The kappa_maps asset checks through Dagster: results per sim, metadata, failing maps."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from lensing_assets.defs.kappa import kappa_maps
from lensing_core.sims.catalog import synthetic_catalog
from lensing_core.sims.sources import SyntheticSource
from lensing_core.storage import DataRoot
from lensing_core.validation import CHECK_NAMES
from tests.fixtures.dagster import ephemeral_instance

IMAGE_PREFIX = "![spectra](data:image/png;base64,"


@dataclass(frozen=True)
class _ScaledSource(SyntheticSource):
    """The synthetic source with every map multiplied by *factor* (a bad pipeline)."""

    factor: float = 2.0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scaled_by": self.factor}

    def load(self, sim_id: int) -> tuple[np.ndarray, dict[str, Any]]:
        maps, provenance = super().load(sim_id)
        return self.factor * maps, provenance


def _materialize(resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [kappa_maps],
        partition_key="109",
        resources=resources,
        instance=ephemeral_instance(),
        raise_on_error=False,
    )


def _run_checks_only(resources: dict) -> dg.ExecuteInProcessResult:
    """The checks of sim 109 without rebuilding its maps.

    ``materialize(partition_key=...)`` refuses a selection with no asset in Dagster 1.13 (it
    looks for the partitions of the selected *assets*), so the partition goes in the run
    tag, as for a run launched from the UI.
    """
    return dg.materialize(
        [kappa_maps],
        selection=dg.AssetSelection.checks_for_assets(kappa_maps),
        tags={"dagster/partition": "109"},
        resources=resources,
        instance=ephemeral_instance(),
        raise_on_error=False,
    )


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_definitions_carry_the_kappa_checks(test_defs: dg.Definitions) -> None:
    """The four checks hang on kappa_maps in the platform's Definitions."""
    keys = test_defs.resolve_asset_graph().asset_check_keys
    assert keys >= {dg.AssetCheckKey(dg.AssetKey("kappa_maps"), name) for name in CHECK_NAMES}


def test_checks_pass_on_synthetic_sim_109(data_root: Path, test_resources: dict) -> None:
    """Synthetic maps at nside 128: every check passes for partition 109 with its numbers."""
    result = _materialize(test_resources)
    assert result.success
    checks = _evaluations(result)
    assert set(checks) == set(CHECK_NAMES)
    for name, evaluation in checks.items():
        assert evaluation.passed, (name, evaluation.description)
        assert evaluation.partition == "109"
        assert evaluation.asset_key == dg.AssetKey("kappa_maps")
    assert checks["maps_finite"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["spectra_match_theory"].severity == dg.AssetCheckSeverity.WARN
    assert checks["maps_finite"].metadata["nonfinite_pixels"].value == 0
    assert len(checks["variance_increases_with_bin"].metadata["std_per_bin"].value) == 4

    meta = checks["spectra_match_theory"].metadata
    assert meta["ell_min"].value == 10
    assert meta["ell_max"].value == 64
    assert meta["rel_tol"].value == pytest.approx(0.1)
    assert meta["n_sigma"].value == pytest.approx(4.0)
    assert meta["max_deviation_sigma"].value < 4
    table = meta["band_ratios"].value
    assert len(table.records) == len(meta["band_edges"].value) - 1
    assert {c.name for c in table.schema.columns} >= {"ell_lo", "ell_hi", "ratio_00", "ratio_23"}
    for record in table.records:
        assert abs(record.data["ratio_11"] - 1) < record.data["tolerance_min"] + 0.2

    markdown = meta["plot"].value
    assert markdown.startswith(IMAGE_PREFIX)
    assert markdown.endswith(")")
    png = base64.b64decode(markdown.removeprefix(IMAGE_PREFIX).removesuffix(")"))
    assert png.startswith(b"\x89PNG")
    assert len(png) < 100_000
    plot_path = Path(meta["plot_path"].value)
    assert plot_path == data_root / "reports" / "kappa_checks" / "sim00109_spectra.png"
    assert plot_path.read_bytes() == png


def test_maps_scaled_by_two_fail_the_spectra_check(test_resources: dict) -> None:
    """A source that doubles kappa: the asset still materializes; the spectra check fails."""
    resources = {
        **test_resources,
        "kappa_source": _ScaledSource(synthetic_catalog(), nside=128, factor=2.0),
    }
    result = _materialize(resources)
    assert result.success
    assert result.asset_materializations_for_node("kappa_maps")
    checks = _evaluations(result)
    spectra = checks["spectra_match_theory"]
    assert not spectra.passed
    assert spectra.severity == dg.AssetCheckSeverity.WARN
    assert spectra.metadata["max_abs_deviation"].value > 2  # power x4: ratio near 4
    assert spectra.metadata["plot"].value.startswith(IMAGE_PREFIX)
    assert "outside" in spectra.description
    assert checks["maps_finite"].passed
    assert checks["mean_near_zero"].passed
    assert checks["variance_increases_with_bin"].passed


def test_nan_in_a_stored_map_fails_the_finite_check(
    data_root: Path, test_resources: dict, rng: np.random.Generator
) -> None:
    """A kappa file with a NaN (written behind the asset's back): ERROR check, count given."""
    maps = rng.normal(size=(4, 12 * 64**2)) * np.array([1.0, 2.0, 3.0, 4.0])[:, None] * 1e-3
    maps[1, 10] = np.nan
    DataRoot(data_root).write_kappa(109, maps, {"params": {}})
    result = _run_checks_only(test_resources)
    assert result.success
    assert not result.asset_materializations_for_node("kappa_maps")
    checks = _evaluations(result)
    finite = checks["maps_finite"]
    assert not finite.passed
    assert finite.severity == dg.AssetCheckSeverity.ERROR
    assert finite.metadata["nonfinite_per_bin"].value == [0, 1, 0, 0]
    assert not checks["spectra_match_theory"].passed
    assert "plot" not in checks["spectra_match_theory"].metadata
    assert checks["variance_increases_with_bin"].passed
