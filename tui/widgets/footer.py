"""The key bar: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer rebuilds all its key widgets whenever the active bindings may have
changed: every focus move (opening the filter box, leaving it), every
``refresh_bindings``. On the job list that rebuild, with its styling pass, cost more
than the keypress itself. Most of those moves leave the shown keys as they were; this
footer compares what it would show with what it shows, and rebuilds only on a
difference (what is painted is Footer's own, unchanged).
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen[Any]) -> tuple[tuple[Any, ...], ...]:
    """What the footer draws from the screen's active bindings: every shown key, with
    its words, whether it is enabled, and its tooltip."""
    app = screen.app
    return tuple(
        (binding.key, app.get_key_display(binding), binding.description, binding.action)
        + (binding.group, enabled, tooltip)
        for (_, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show or binding.key == app.COMMAND_PALETTE_BINDING
    )


NARROW = 100  # below this many columns the keys are drawn compact: "s Servers" fits 80


class KeyFooter(Footer):
    """A Footer that rebuilds only when the keys it shows changed; compact when narrow."""

    def on_resize(self) -> None:
        self.compact = self.app.size.width < NARROW

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._shown: tuple[tuple[Any, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            shown = shown_keys(screen)
            if shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)
