"""The label set: matching a written class name to one of the configured classes, or to the
answer ``unusable`` (not a face one can label: it leaves every split; see docs/LABELING.md)."""

from __future__ import annotations

from collections.abc import Sequence

UNUSABLE = "unusable"  # an answer, not a class: no label set may have a class of this name


def canonical_label(label: str, classes: Sequence[str]) -> str | None:
    """The class ``label`` names (exact after trimming, else the one class equal ignoring
    case), or None."""
    label = label.strip()
    if label in classes:
        return label
    folded = [c for c in classes if c.casefold() == label.casefold()]
    return folded[0] if len(folded) == 1 else None


def canonical_answer(label: str, classes: Sequence[str]) -> str | None:
    """What an annotator's ``label`` answers: a class (as :func:`canonical_label`), or
    :data:`UNUSABLE` for ``unusable`` in any case, or None."""
    if label.strip().casefold() == UNUSABLE:
        return UNUSABLE
    return canonical_label(label, classes)
