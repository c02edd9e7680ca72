"""Step results as Dagster metadata: paths, tables and images become their metadata values."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from lensing_core.results import Image, Markdown, StepResult, Table


def markdown_image(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """PNG bytes as a markdown image (the UI opens it from the metadata table)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def metadata_value(value: Any) -> Any:
    """One value of a step's metadata as Dagster shows it."""
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, Image):
        return markdown_image(value.png, value.alt)
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(value.text)
    if isinstance(value, Table):
        schema = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in value.columns.items()])
        return dg.MetadataValue.table([dg.TableRecord(dict(row)) for row in value.rows], schema)
    return value


def dagster_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A step's ``to_metadata()`` record as Dagster metadata."""
    return {name: metadata_value(value) for name, value in metadata.items()}


def materialized(result: StepResult) -> dg.MaterializeResult:
    """The materialization of an asset whose step returned *result*."""
    return dg.MaterializeResult(metadata=dagster_metadata(result.to_metadata()))
