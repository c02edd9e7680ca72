"""What a step tells about its outcome: JSON-ready records with tables, images and paths.

Every step that the Dagster assets call returns a result with ``to_metadata()``: a mapping of
names to JSON-ready values, :class:`pathlib.Path` objects, :class:`Table`, :class:`Image` and
:class:`Markdown`. The assets turn it into Dagster metadata in one place, so a step's result is
described once, where it is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Table:
    """
    A small table for people: typed columns and rows.

    Attributes
    ----------
    columns
        Column name -> type: ``"string"``, ``"int"``, ``"float"`` or ``"bool"``.
    rows
        One mapping per row, keyed by column name.
    """

    columns: Mapping[str, str]
    rows: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Image:
    """
    A PNG image with a short description.

    Attributes
    ----------
    png
        The encoded image.
    alt
        What it shows, in a few words.
    """

    png: bytes
    alt: str


@dataclass(frozen=True)
class Markdown:
    """
    Text in Markdown (a report, a table), shown rendered.

    Attributes
    ----------
    text
        The Markdown source.
    """

    text: str


class StepResult(Protocol):
    """What every step returns: something that describes itself as metadata."""

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready values, paths, :class:`Table` and :class:`Image` by name."""
        ...
