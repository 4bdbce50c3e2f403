"""Keeping a DataTable up to date cheaply: only the cells whose value changed are written.

``DataTable.update_cell(..., update_width=True)`` re-measures the whole column whenever
a value gets narrower, so updating every cell of every row on each refresh is quadratic
in the number of rows (300 tasks blocked the loop for seconds, and the embedded engine
with it). Here a cell is written only when its value differs from the one written last
time, without re-measuring; a column grows when a new value is wider than it (measuring
that one cell) and never shrinks while the rows stay the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

Cells = tuple[object, ...]


def cell_width(value: object) -> int:
    """Width in cells of a one-line value (str or Text)."""
    if isinstance(value, Text):
        return value.cell_len
    return cell_len(str(value))


class RowCells:
    """The values last written to a DataTable's rows, by row key."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = [ColumnKey(c) for c in columns]
        self.rows: dict[str, Cells] = {}

    def reset(self, rows: Mapping[str, Cells]) -> None:
        """The table was rebuilt with exactly these rows."""
        self.rows = dict(rows)

    def sync(self, table: DataTable[Any], rows: Mapping[str, Cells]) -> int:
        """Write the cells that changed since last time (same row keys); how many were."""
        written = 0
        for key, cells in rows.items():
            before = self.rows.get(key)
            for i, (column, value) in enumerate(zip(self.columns, cells, strict=True)):
                if before is not None and before[i] == value:
                    continue
                col = table.columns.get(column)
                grow = col is not None and col.auto_width and cell_width(value) > col.content_width
                table.update_cell(key, column, value, update_width=grow)
                written += 1
            self.rows[key] = cells
        return written
