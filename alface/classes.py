"""The label set: matching a written class name to one of the configured classes."""

from __future__ import annotations

from collections.abc import Sequence


def canonical_label(label: str, classes: Sequence[str]) -> str | None:
    """The class ``label`` names (exact after trimming, else the one class equal ignoring
    case), or None."""
    label = label.strip()
    if label in classes:
        return label
    folded = [c for c in classes if c.casefold() == label.casefold()]
    return folded[0] if len(folded) == 1 else None
