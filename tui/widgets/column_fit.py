"""Which columns of a table fit a width, by priority: the columns an operator needs to
decide (a task's name, status, how a cancel stops it, its message) keep their room; the
others drop, least needed first, and the message is cut only when nothing else is left
to give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CELL_PADDING = 2  # a DataTable cell's padding, one each side


def fit_columns(
    width: int,
    natural: Mapping[str, int],
    order: Sequence[str],
    drops: Sequence[str],
    flexible: str,
    *,
    flexible_min: int = 24,
    late_drops: Sequence[str] = (),
) -> tuple[tuple[str, int | None], ...]:
    """The columns of ``order`` to show in ``width`` cells and, for ``flexible`` (the
    message), a width when it must be cut (None: its natural width, nothing cut).

    ``natural``: each column's widest cell (its title included). ``drops`` go first, in
    order, while the table is too wide; then ``flexible`` shrinks down to
    ``flexible_min``; then ``late_drops`` go; what is left is ``flexible``'s."""
    shown = list(order)

    def need(keys: list[str], flex: int | None = None) -> int:
        return sum(
            (flex if k == flexible and flex is not None else natural.get(k, 0)) + CELL_PADDING
            for k in keys
        )

    for key in drops:
        if need(shown) <= width:
            break
        if key in shown:
            shown.remove(key)
    floor = min(natural.get(flexible, 0), flexible_min)
    for key in late_drops:
        if need(shown, floor) <= width:
            break
        if key in shown:
            shown.remove(key)
    if need(shown) <= width or flexible not in shown:
        return tuple((k, None) for k in shown)
    room = width - need([k for k in shown if k != flexible]) - CELL_PADDING
    flex = max(floor, room)
    return tuple((k, flex if k == flexible else None) for k in shown)
