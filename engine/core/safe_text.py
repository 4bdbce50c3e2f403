"""Text from recipes and tasks made safe for a terminal.

Job and task names, messages, reasons and a shell command's output are written by
whoever wrote the recipe or the program it runs. Printed raw, an ESC sequence in them
clears the operator's screen or sets the window title, a newline breaks a table row,
and a bidirectional override makes one name read as another. Every such character is
shown instead as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``), so what the operator
reads is what is stored, and nothing in it can act on the terminal.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; Unicode format characters that reorder or hide text
# (bidi embeddings, overrides and isolates, zero-width characters, the BOM, tag
# characters); line and paragraph separators; lone surrogates (which cannot even be
# encoded for output).
_OTHER_UNSAFE = (
    "\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0000-\U000e007f\ud800-\udfff"
)
_ONE_LINE = re.compile(f"[\x00-\x1f{_OTHER_UNSAFE}]")
# In a block, newline and tab stay: they lay the lines out and cannot act on the terminal.
_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER_UNSAFE}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_line(text: object) -> str:
    """One line for a terminal: every control or format character escaped, newlines too.

    For fields shown on one line (names, messages, reasons, table cells).
    """
    s = "" if text is None else str(text)
    return _ONE_LINE.sub(_escape, s) if _ONE_LINE.search(s) else s


def safe_block(text: object) -> str:
    """Several lines for a terminal (a command's output tail): newlines kept, every other
    control or format character escaped (a carriage return too: it would overwrite)."""
    s = "" if text is None else str(text)
    return _BLOCK.sub(_escape, s) if _BLOCK.search(s) else s
