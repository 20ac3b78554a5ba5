"""Spreadsheet cells safe to open: no formula runs from a value alface writes to a CSV.

OWASP's rule for CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with a single quote, which spreadsheets show as text. Readers take
the quote off again (:func:`unescape_cell`), so a file alface wrote reads back as written. A
plain number (``-15.9``, ``+3``, ``-1e-05``) is left as it is: a spreadsheet reads it as that
number and runs nothing, and a quote would turn faces.csv's negative box coordinates (a face
cut by the frame's edge) into text for pandas and R.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def escape_cell(value: Any) -> Any:
    """``value`` with a leading quote when, as text, it could start a formula (or already
    reads as an escaped one, so that :func:`unescape_cell` gives it back as it was)."""
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return value if _NUMBER.fullmatch(value) else "'" + value
    return value


def unescape_cell(text: str) -> str:
    """A cell as written before :func:`escape_cell` (a quote before a formula start removed)."""
    if len(text) > 1 and text[0] == "'" and text.lstrip("'").startswith(FORMULA_STARTS):
        return text[1:]
    return text
