"""The study: field, Cl and Fisher results read per configuration, compared and reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

import lensing_core.inference.study as study_module
from lensing_core.inference.fom import FOM_RESULT_KEYS, write_fom_result
from lensing_core.inference.study import (
    TABLE_COLUMNS,
    Study,
    collect_study,
    default_configs,
    write_study,
)
from lensing_core.io import write_json
from lensing_core.plotting.figures import figure_to_png_bytes
from lensing_core.plotting.study import NO_RESULTS_TEXT, study_figure
from lensing_core.results import Image, Markdown, Table
from lensing_core.sky.noise import NOISE_LEVELS
from lensing_core.sky.tiles import LMAX_TO_NSIDE
from lensing_core.storage import DataRoot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPLIT_A = "a" * 64
SPLIT_B = "b" * 64


def fom_record(
    lmax: int,
    noise_level: str,
    fom: float,
    fom_std: float,
    *,
    coverage_68: float = 0.66,
    coverage_95: float = 0.94,
    n_test: int = 300,
    fom_prior: float = 30.0,
    split_sha256: str | None = None,
    verdict: str | None = None,
    seed_std: float | None = None,
) -> dict[str, Any]:
    """A valid ``fom_result.json`` record (every key of FOM_RESULT_KEYS)."""
    record: dict[str, Any] = {
        "lmax": lmax,
        "noise_level": noise_level,
        "params": ["omega_m", "s8"],
        "fom_fiducial_median": fom,
        "fom_fiducial_std": fom_std,
        "fom_fiducial_all": [fom] * 12,
        "fom_test_median": 0.9 * fom,
        "fom_test_lo_16": 0.5 * fom,
        "fom_test_hi_84": 1.5 * fom,
        "fom_prior": fom_prior,
        "compressor_checkpoint": "models/compressor/best.ckpt",
        "calibration": {"coverage_68": coverage_68, "coverage_95": coverage_95, "n_test": n_test},
    }
    if split_sha256 is not None:
        record["split_sha256"] = split_sha256
    if verdict is not None:
        record["calibration"]["verdict"] = verdict
    if seed_std is not None:
        record["fom_scatter"] = {"tile": fom_std, "realization": None, "seed": seed_std}
        record["seeds"] = [42, 43, 44]
    assert set(FOM_RESULT_KEYS) <= set(record)
    return record


def write_field(root: DataRoot, lmax: int, noise: str, fom: float, std: float, **kw: Any) -> Path:
    record = fom_record(lmax, noise, fom, std, **kw)
    return write_fom_result(root.npe(lmax, noise).fom_result, record, tmp_root=root.tmp_root)


def write_cl(root: DataRoot, lmax: int, noise: str, fom: float, std: float, **kw: Any) -> Path:
    record = fom_record(lmax, noise, fom, std, **kw)
    return write_fom_result(root.cl_fom_result_path(lmax, noise), record, tmp_root=root.tmp_root)


def write_fisher(root: DataRoot, lmax: int, noise: str, fom: float, fom_fixed: float) -> Path:
    record = {
        "fom_fisher": fom,
        "fom_fisher_fixed": fom_fixed,
        "fom_prior": 25.0,
        "param_names": ["omega_m", "s8", "w", "h", "n_s", "omega_bh2", "m_nu"],
        "f_sky": 1 / 12,
    }
    return write_json(root.fisher_path(lmax, noise), record, tmp_root=root.tmp_root)


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


@pytest.fixture
def filled_root(root: DataRoot) -> DataRoot:
    """lmax 200 noiseless complete; lmax 400 noiseless without Cl; lmax 200 des_y3 Fisher only."""
    write_field(
        root,
        200,
        "noiseless",
        400.0,
        20.0,
        coverage_68=0.7,
        coverage_95=0.96,
        verdict="calibrated",
        seed_std=12.0,
    )
    write_cl(root, 200, "noiseless", 200.0, 10.0, coverage_68=0.6, coverage_95=0.9, n_test=250)
    write_fisher(root, 200, "noiseless", 800.0, 1600.0)
    write_field(root, 400, "noiseless", 900.0, 30.0)
    write_fisher(root, 400, "noiseless", 1200.0, 2000.0)
    write_fisher(root, 200, "des_y3", 300.0, 500.0)
    return root


CONFIGS = [(200, "noiseless"), (400, "noiseless"), (200, "des_y3")]


def row_of(study: Study, config: str) -> dict[str, Any]:
    (row,) = [r for r in study.to_record()["rows"] if r["config"] == config]
    return row


# --- reading ------------------------------------------------------------------------------------


def test_values_and_ratios_of_a_complete_configuration(filled_root: DataRoot) -> None:
    study = collect_study(filled_root, CONFIGS)
    row = row_of(study, "lmax_200_noiseless")
    assert (row["lmax"], row["noise_level"]) == (200, "noiseless")
    assert (row["fom_field"], row["fom_field_std"]) == (400.0, 20.0)
    assert (row["coverage_68_field"], row["coverage_95_field"], row["n_test_field"]) == (
        0.7,
        0.96,
        300,
    )
    assert (row["verdict_field"], row["fom_field_seed_std"]) == ("calibrated", 12.0)
    assert (row["fom_cl"], row["fom_cl_std"]) == (200.0, 10.0)
    assert (row["verdict_cl"], row["fom_cl_seed_std"]) == ("not recorded", None)
    assert (row["coverage_68_cl"], row["coverage_95_cl"], row["n_test_cl"]) == (0.6, 0.9, 250)
    assert (row["fom_fisher"], row["fom_fisher_fixed"]) == (800.0, 1600.0)
    assert row["field_over_cl"] == pytest.approx(2.0)
    assert row["field_over_fisher"] == pytest.approx(0.5)
    assert row["cl_over_fisher"] == pytest.approx(0.25)
    assert (row["fom_prior"], row["fom_prior_box"]) == (30.0, 25.0)
    assert row["split_mismatch"] is False
    assert row["notes"] == []


def test_missing_results_are_none_and_listed_with_their_file(filled_root: DataRoot) -> None:
    study = collect_study(filled_root, CONFIGS)
    partial = row_of(study, "lmax_400_noiseless")
    assert partial["fom_field"] == 900.0
    assert partial["fom_cl"] is None
    assert partial["coverage_68_cl"] is None
    assert partial["field_over_cl"] is None
    assert partial["cl_over_fisher"] is None
    assert partial["field_over_fisher"] == pytest.approx(0.75)
    fisher_only = row_of(study, "lmax_200_des_y3")
    assert fisher_only["fom_field"] is None
    assert fisher_only["fom_prior"] is None
    assert fisher_only["fom_fisher"] == 300.0

    missing = {(m["config"], m["result"]): m for m in study.to_record()["missing"]}
    assert set(missing) == {
        ("lmax_400_noiseless", "cl"),
        ("lmax_200_des_y3", "field"),
        ("lmax_200_des_y3", "cl"),
    }
    entry = missing[("lmax_400_noiseless", "cl")]
    assert entry["path"] == str(filled_root.cl_fom_result_path(400, "noiseless"))
    assert entry["unreadable"] is False
    assert "lmax_400_noiseless" in entry["reason"]
    assert entry["path"] in entry["reason"]
    counts = study.counts()
    assert (counts["field"], counts["cl"], counts["fisher"], counts["complete"]) == (2, 1, 3, 1)


def test_every_configuration_is_read_by_default(root: DataRoot) -> None:
    write_field(root, 1000, "lsst_y10", 500.0, 40.0)
    study = collect_study(root)
    assert [(r.lmax, r.noise_level) for r in study.rows] == default_configs()
    assert len(study.rows) == len(LMAX_TO_NSIDE) * len(NOISE_LEVELS)
    assert study.counts()["field"] == 1
    assert len(study.missing) == 3 * len(study.rows) - 1


def test_a_corrupt_file_is_missing_with_its_file_named_and_the_others_are_read(
    filled_root: DataRoot, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = filled_root.npe(200, "noiseless").fom_result
    corrupt.write_text('{"lmax": 200, "fom_fiducial_med')  # truncated
    with caplog.at_level(logging.WARNING, logger="lensing_core.inference.study"):
        study = collect_study(filled_root, CONFIGS)
    row = row_of(study, "lmax_200_noiseless")
    assert row["fom_field"] is None
    assert row["field_over_cl"] is None
    assert row["fom_cl"] == 200.0  # the same configuration's other results are still read
    assert row["cl_over_fisher"] == pytest.approx(0.25)
    assert row_of(study, "lmax_400_noiseless")["fom_field"] == 900.0
    (entry,) = [m for m in study.missing if m.unreadable]
    assert (entry.config, entry.result, entry.path) == ("lmax_200_noiseless", "field", corrupt)
    assert str(corrupt) in entry.reason
    assert "lmax_200_noiseless" in entry.reason
    assert any(str(corrupt) in r.getMessage() for r in caplog.records)
    assert study.counts()["unreadable"] == 1


def _nan_fom(root: DataRoot) -> Path:
    path = root.npe(200, "noiseless").fom_result
    text = json.dumps(fom_record(200, "noiseless", 400.0, 20.0))
    path.write_text(text.replace('"fom_fiducial_median": 400.0', '"fom_fiducial_median": NaN'))
    return path


def _lacking_a_key(root: DataRoot) -> Path:
    path = root.cl_fom_result_path(200, "noiseless")
    record = fom_record(200, "noiseless", 200.0, 10.0)
    del record["calibration"]
    path.write_text(json.dumps(record))
    return path


def _infinite_fisher(root: DataRoot) -> Path:
    path = root.fisher_path(200, "noiseless")
    path.write_text('{"fom_fisher": Infinity, "fom_fisher_fixed": 1600.0, "fom_prior": 25.0}')
    return path


def _fisher_lacking_a_key(root: DataRoot) -> Path:
    path = root.fisher_path(200, "noiseless")
    path.write_text('{"fom_fisher": 800.0, "fom_prior": 25.0}')
    return path


def _other_configuration(root: DataRoot) -> Path:
    path = root.npe(200, "noiseless").fom_result
    record = fom_record(600, "noiseless", 400.0, 20.0)  # a record copied to the wrong place
    return write_fom_result(path, record, tmp_root=root.tmp_root)


def _null_coverage(root: DataRoot) -> Path:
    path = root.cl_fom_result_path(200, "noiseless")
    record = fom_record(200, "noiseless", 200.0, 10.0)
    record["calibration"]["coverage_68"] = None
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    ("spoil", "result", "words"),
    [
        (_nan_fom, "field", "fom_fiducial_median"),
        (_lacking_a_key, "cl", "calibration"),
        (_null_coverage, "cl", "coverage_68"),
        (_infinite_fisher, "fisher", "fom_fisher"),
        (_fisher_lacking_a_key, "fisher", "fom_fisher_fixed"),
        (_other_configuration, "field", "lmax 600"),
    ],
)
def test_an_unusable_record_is_missing_with_the_reason(
    filled_root: DataRoot, spoil: Any, result: str, words: str
) -> None:
    path = spoil(filled_root)
    study = collect_study(filled_root, CONFIGS)
    row = study.rows[0]
    assert row.config == "lmax_200_noiseless"
    assert getattr(row, result) is None
    assert [r for r in ("field", "cl", "fisher") if getattr(row, r) is None] == [result]
    (entry,) = [m for m in study.missing if m.unreadable]
    assert (entry.result, entry.path) == (result, path)
    assert str(path) in entry.reason
    assert words in entry.reason
    json.dumps(study.to_record(), allow_nan=False)  # still JSON-ready


def test_unknown_or_repeated_configurations_are_refused(root: DataRoot) -> None:
    with pytest.raises(ValueError, match="300"):
        collect_study(root, [(300, "noiseless")])
    with pytest.raises(ValueError, match="des_y1"):
        collect_study(root, [(200, "des_y1")])
    with pytest.raises(ValueError, match="lmax_200_noiseless"):
        collect_study(root, [(200, "noiseless"), (200, "noiseless")])
    with pytest.raises(ValueError, match="no configuration"):
        collect_study(root, [])


# --- split mismatch -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_split", "cl_split", "flagged"),
    [(SPLIT_A, SPLIT_B, True), (SPLIT_A, SPLIT_A, False), (SPLIT_A, None, False)],
    ids=["different", "same", "cl-unknown"],
)
def test_npes_trained_on_different_splits_are_flagged(
    root: DataRoot, field_split: str, cl_split: str | None, flagged: bool
) -> None:
    write_field(root, 600, "des_y3", 400.0, 20.0, split_sha256=field_split)
    write_cl(root, 600, "des_y3", 200.0, 10.0, split_sha256=cl_split)
    study = collect_study(root, [(600, "des_y3"), (800, "des_y3")])
    row = row_of(study, "lmax_600_des_y3")
    assert row["split_mismatch"] is flagged
    assert row["split_sha256_field"] == field_split
    assert row["split_sha256_cl"] == cl_split
    assert row["field_over_cl"] == pytest.approx(2.0)
    assert study.split_mismatches() == (["lmax_600_des_y3"] if flagged else [])
    markdown = study.markdown()
    assert ("## Notes" in markdown) is flagged
    assert ("| 2 † |" in markdown) is flagged
    if flagged:
        notes = markdown.split("## Notes")[1]
        assert "lmax_600_des_y3" in notes
        assert SPLIT_A in notes
        assert SPLIT_B in notes
        assert "different splits" in row["notes"][0]


# --- the report's parts -------------------------------------------------------------------------


def _table_lines(markdown: str) -> dict[str, list[str]]:
    """Noise level -> the data lines of its table."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            current = line.removeprefix("## ")
        elif current is not None and line.startswith("| ") and not line.startswith("| lmax"):
            tables.setdefault(current, []).append(line)
    return tables


def test_markdown_has_one_table_per_noise_level_and_shows_missing(
    filled_root: DataRoot,
) -> None:
    filled_root.fisher_path(400, "noiseless").write_text("not json")
    study = collect_study(filled_root)
    markdown = study.markdown()
    assert markdown.count("| lmax |") == len(NOISE_LEVELS)
    tables = _table_lines(markdown)
    assert list(tables) == list(NOISE_LEVELS)
    for lines in tables.values():
        assert [line.split(" | ")[0] for line in lines] == [
            f"| {lmax}" for lmax in sorted(LMAX_TO_NSIDE)
        ]
    complete, partial = tables["noiseless"][:2]
    cells = [c.strip() for c in complete.strip("|").split("|")]
    assert cells == [
        "200",
        "400 ± 20 (seeds ± 12)",
        "0.70 / 0.96, calibrated",
        "200 ± 10",
        "0.60 / 0.90",
        "800 (1600)",
        "2",
        "0.5",
        "0.25",
        "30",
    ]
    cells = [c.strip() for c in partial.strip("|").split("|")]
    assert cells[3:6] == ["missing", "missing", "unreadable"]
    assert cells[6:9] == ["—", "—", "—"]
    assert all(cell == "missing" for cell in tables["lsst_y10"][0].split(" | ")[1:6])
    missing_section = markdown.split("## Missing results")[1]
    assert str(filled_root.fisher_path(400, "noiseless")) in missing_section
    assert str(filled_root.cl_fom_result_path(400, "noiseless")) in missing_section
    # the unreadable file is listed first
    assert missing_section.strip().splitlines()[0].count("fisher.json") == 1


def test_table_is_typed_with_none_for_missing_values(filled_root: DataRoot) -> None:
    table = collect_study(filled_root, CONFIGS).table()
    assert isinstance(table, Table)
    assert dict(table.columns) == TABLE_COLUMNS
    assert set(table.columns.values()) <= {"string", "int", "float", "bool"}
    rows = {row["config"]: row for row in table.rows}
    assert list(rows) == ["lmax_200_noiseless", "lmax_400_noiseless", "lmax_200_des_y3"]
    complete = rows["lmax_200_noiseless"]
    assert (complete["fom_field"], complete["fom_cl"], complete["fom_fisher"]) == (400, 200, 800)
    assert complete["field_over_cl"] == pytest.approx(2.0)
    assert complete["field_over_fisher"] == pytest.approx(0.5)
    assert complete["cl_over_fisher"] == pytest.approx(0.25)
    assert rows["lmax_400_noiseless"]["fom_cl"] is None
    python_types = {"string": str, "int": int, "float": float, "bool": bool}
    for row in table.rows:
        assert set(row) == set(TABLE_COLUMNS)
        for name, kind in TABLE_COLUMNS.items():
            value = row[name]
            assert value is None or type(value) is python_types[kind], (name, value)


# --- the figure ---------------------------------------------------------------------------------


def test_figure_has_a_log_panel_per_noise_level_and_says_when_one_is_empty() -> None:
    nan = float("nan")
    fig = study_figure(
        [200, 400, 600],
        {
            "noiseless": {
                "field": [400.0, None, 900.0],
                "cl": [200.0, 300.0, nan],
                "fisher": [800.0, 1000.0, 1200.0],
            },
            "des_y3": {"field": [None, None, None], "fisher": [nan, nan, nan]},
            "lsst_y10": {"cl": [50.0, 60.0, 70.0]},
        },
        fom_std={
            "noiseless": {"field": [20.0, None, 30.0], "cl": [10.0, 10.0, nan]},
            "lsst_y10": {"cl": [80.0, 5.0, 5.0]},  # a band through zero at lmax 200
        },
    )
    assert isinstance(fig, Figure)
    full, empty, through_zero = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["noiseless", "des_y3", "lsst_y10"]
    assert full.get_yscale() == "log"
    assert through_zero.get_yscale() == "log"
    assert [t.get_text() for t in empty.texts] == [NO_RESULTS_TEXT]
    assert not full.texts
    assert 0 < through_zero.get_ylim()[0] < 50.0 - 5.0
    labels = [t.get_text() for t in full.get_legend().get_texts()]
    assert len(labels) == 3
    assert labels[2] == "Fisher forecast"
    assert figure_to_png_bytes(fig).startswith(PNG_SIGNATURE)


def test_figure_refuses_curves_without_one_value_per_lmax() -> None:
    with pytest.raises(ValueError, match="noiseless"):
        study_figure([200, 400], {"noiseless": {"field": [1.0, 2.0, 3.0]}})


# --- writing ------------------------------------------------------------------------------------


def test_write_study_writes_the_record_the_figure_and_the_text(filled_root: DataRoot) -> None:
    study = collect_study(filled_root, CONFIGS)
    report = write_study(filled_root, study)
    study_dir = filled_root.study_dir
    assert (report.json_path, report.png_path, report.md_path) == (
        study_dir / "study.json",
        study_dir / "study.png",
        study_dir / "study.md",
    )
    assert json.loads(report.json_path.read_text()) == study.to_record() == report.record
    assert report.png_path.read_bytes() == report.png
    assert report.png.startswith(PNG_SIGNATURE)
    assert report.md_path.read_text() == study.markdown() == report.markdown
    assert not list(filled_root.tmp_root.iterdir())  # no temporary left behind

    metadata = report.to_metadata()
    assert metadata["path"] == report.json_path
    assert metadata["figure_path"] == report.png_path
    assert metadata["markdown_path"] == report.md_path
    assert (metadata["n_configurations"], metadata["n_field"], metadata["n_cl"]) == (3, 2, 1)
    assert (metadata["n_fisher"], metadata["n_complete"], metadata["n_unreadable"]) == (3, 1, 0)
    assert isinstance(metadata["study"], Table)
    assert isinstance(metadata["figure"], Image)
    assert metadata["figure"].png == report.png
    assert metadata["report"] == Markdown(report.markdown)
    assert metadata["split_mismatches"] == []
    assert metadata["unreadable"] == []
    plain = {
        k: v for k, v in metadata.items() if not isinstance(v, Path | Table | Image | Markdown)
    }
    json.dumps(plain, allow_nan=False)


def test_a_study_with_no_result_is_still_written_and_says_so(root: DataRoot) -> None:
    study = collect_study(root)
    assert study.is_empty
    report = write_study(root, study)
    assert report.png_path.read_bytes().startswith(PNG_SIGNATURE)
    assert "no result yet in any of the 15 configurations" in report.md_path.read_text()
    assert report.to_metadata()["n_field"] == 0
    assert report.summary == "no result yet in any of the 15 configurations"
    root.fisher_path(600, "des_y3").parent.mkdir(parents=True)
    root.fisher_path(600, "des_y3").write_text("")
    assert collect_study(root).summary() == (
        "no result yet in any of the 15 configurations; 1 unreadable"
    )
    assert all(ax.texts[0].get_text() == NO_RESULTS_TEXT for ax in study.figure().axes)


def test_nothing_is_written_when_the_figure_fails(
    filled_root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Figure:
        raise RuntimeError("no figure today")

    with monkeypatch.context() as patch:
        patch.setattr(study_module, "study_figure", broken)
        with pytest.raises(RuntimeError, match="no figure today"):
            write_study(filled_root, collect_study(filled_root, CONFIGS))
    assert not filled_root.study_dir.exists() or not list(filled_root.study_dir.iterdir())

    # an earlier report stays whole: none of its files is replaced
    before = write_study(filled_root, collect_study(filled_root, CONFIGS[:1]))
    files = [before.json_path, before.png_path, before.md_path]
    old = [path.read_bytes() for path in files]
    monkeypatch.setattr(study_module, "study_figure", broken)
    with pytest.raises(RuntimeError, match="no figure today"):
        write_study(filled_root, collect_study(filled_root, CONFIGS))
    assert [path.read_bytes() for path in files] == old
    assert sorted(p.name for p in filled_root.study_dir.iterdir()) == sorted(p.name for p in files)


def test_record_is_json_ready_without_nan(filled_root: DataRoot) -> None:
    record = collect_study(filled_root).to_record()
    text = json.dumps(record, allow_nan=False)
    values = [v for row in json.loads(text)["rows"] for v in row.values()]
    assert not any(isinstance(v, float) and not np.isfinite(v) for v in values)
    assert set(record) == {"definitions", "counts", "split_mismatches", "rows", "missing"}
