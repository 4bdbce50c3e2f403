"""The frame every confirmation shares: a bordered dialog, a list that scrolls, buttons.
Its look is in tui/batchdeck.tcss, written once for ``Dialog`` (Textual's type selectors
match subclasses too)."""

from __future__ import annotations

from typing import TypeVar

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button

R = TypeVar("R")


class Dialog(ModalScreen[R]):
    """A confirmation: Escape backs out; the arrow and page keys scroll its list while
    the focus stays on the buttons."""

    BINDINGS = [
        Binding("up", "scroll_list(-1)", "Scroll up", show=False),
        Binding("down", "scroll_list(1)", "Scroll down", show=False),
        Binding("pageup", "scroll_list(-10)", "Page up", show=False),
        Binding("pagedown", "scroll_list(10)", "Page down", show=False),
    ]

    def on_mount(self) -> None:
        self.call_after_refresh(self._fit_lists)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_lists)

    def _fit_lists(self) -> None:
        """Grow the lists to their content, up to the screen: the dialog takes every row
        the other parts leave (an enhanced abort lists all the disrupted jobs that fit)."""
        box = self.query("#dialog").first() if self.query("#dialog") else None
        lists = list(self.query(DialogList))
        if box is None or not lists:
            return
        others = sum(w.outer_size.height for w in box.children if w not in lists)
        margins = sum(w.styles.margin.height for w in lists)
        room = self.size.height - box.styles.gutter.height - others - margins
        each = max(3, room // len(lists))
        for scroll in lists:
            if scroll.styles.max_height is None or scroll.styles.max_height.value != each:
                scroll.styles.max_height = each

    def action_scroll_list(self, lines: int) -> None:
        for scroll in self.query(DialogList):
            scroll.scroll_relative(y=lines, animate=False)


class DialogList(VerticalScroll, can_focus=False):
    """What a confirmation lists. Not focusable: Tab goes from button to button, so Tab
    then Enter does what the focused button says."""


class YesNoModal(Dialog[bool]):
    """Yes / No, with y and n bound (and shown on the buttons); Escape (and No) dismiss
    with False. No has the focus first: it is the default."""

    BINDINGS = [
        Binding("y", "yes", "Yes"),
        Binding("n", "no", "No"),
        Binding("escape", "no", "Back"),
    ]
    AUTO_FOCUS = "#no"

    @staticmethod
    def yes_button(label: str, variant: str = "error") -> Button:
        # Content, not a str: "[y]" would be read as markup.
        return Button(Content(f"{label} [y]"), variant=variant, id="yes")  # type: ignore[arg-type]

    @staticmethod
    def no_button() -> Button:
        return Button(Content("No [n]"), variant="primary", id="no")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")
