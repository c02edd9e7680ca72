"""Metadata values the assets show in the UI: embedded images and tables."""

import base64

import dagster as dg


def markdown_image(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """PNG bytes as a markdown image (the UI opens it from the metadata table)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def metadata_table(columns: dict[str, str], rows: list[dict]) -> dg.TableMetadataValue:
    """A metadata table: *columns* maps each name to its type (``"string"``, ``"float"``)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in columns.items()])
    return dg.MetadataValue.table([dg.TableRecord(row) for row in rows], schema)
