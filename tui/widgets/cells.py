"""Keeping a DataTable up to date cheaply: only the cells whose value changed are written.

``DataTable.update_cell(..., update_width=True)`` re-measures the whole column whenever
a value gets narrower, so updating every cell of every row on each refresh is quadratic
in the number of rows (300 tasks blocked the loop for seconds, and the embedded engine
with it). Here a cell is written only when its value differs from the one written last
time, without re-measuring; a column grows when a new value is wider than it (measuring
that one cell) and never shrinks while the rows stay the same.

Columns are widened here, in the same step that writes the cells, never left to the
table's idle-time measuring: DataTable caches rendered cells under a key that does not
hold the column widths, so a frame painted between ``add_row`` and that measuring kept
the label-wide columns ("slee", "Aborte") until the next change, which on a finished job
never comes.
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

    def rebuild(self, table: DataTable[Any], rows: Mapping[str, Cells]) -> None:
        """Write the table again with exactly these rows, in this order; its columns fit
        them before any frame is painted."""
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
            for column, value in zip(self.columns, cells, strict=True):
                _fit(table, column, value)
        self.rows = dict(rows)

    def sync(self, table: DataTable[Any], rows: Mapping[str, Cells]) -> int:
        """Write the cells that changed since last time (same row keys); how many were."""
        written = 0
        for key, cells in rows.items():
            before = self.rows.get(key)
            for i, (column, value) in enumerate(zip(self.columns, cells, strict=True)):
                if before is not None and before[i] == value:
                    continue
                grew = _fit(table, column, value)
                # update_width: the table's own measuring then moves its scroll size too.
                table.update_cell(key, column, value, update_width=grew)
                if grew:
                    table.refresh()  # every row, not only this cell, is wider now
                written += 1
            self.rows[key] = cells
        return written


def _fit(table: DataTable[Any], column: ColumnKey, value: object) -> bool:
    """Widen an auto-width column to hold ``value``; whether it grew."""
    col = table.columns.get(column)
    width = cell_width(value)
    if col is None or not col.auto_width or width <= col.content_width:
        return False
    col.content_width = width
    return True
