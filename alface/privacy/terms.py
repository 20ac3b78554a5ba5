"""The terms each source was collected under (a licence, a consent reference), as
`preprocess --source-terms` records them, and as exports and model cards carry them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alface.errors import AlfaceError
from alface.store import Store

MAX_CHARS = 20000  # terms longer than this belong in a document the terms refer to
NONE = "none recorded"


class TermsError(AlfaceError, ValueError):
    """Terms that cannot be recorded (an empty text, a file that cannot be read, too long)."""


def read_terms(value: str) -> str:
    """The terms ``value`` gives: the text of the file it names, else the text itself (a URL
    is text). A value that looks like a file name but names no file is refused."""
    path, shown = Path(value).expanduser(), value if len(value) <= 60 else value[:57] + "..."
    try:
        is_file = path.is_file()
    except OSError:  # a long text is no file name
        is_file = False
    looks_like_file = "://" not in value and not any(c.isspace() for c in value) and (
        "/" in value or path.suffix.lower() in (".txt", ".md", ".pdf")
    )  # fmt: skip
    if is_file:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TermsError(f"--source-terms {shown}: cannot read it as UTF-8 text ({e})") from e
    elif looks_like_file:
        raise TermsError(f"--source-terms {shown}: no such file (give a file or the text itself)")
    else:
        text = value
    text = text.strip()
    if not text:
        raise TermsError(f"--source-terms {shown!r}: empty; give the licence or consent reference")
    if len(text) > MAX_CHARS:
        raise TermsError(f"--source-terms {shown}: {len(text)} characters, at most {MAX_CHARS}: "
                         "record a reference to the document instead")  # fmt: skip
    return text


def terms_summary(store: Store, item_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The terms the faces ``item_ids`` (all when None) were collected under: one entry per
    text (None: no terms recorded) with its sources and faces, the most faces first. For model
    cards (the faces a model was trained on) and exports."""
    texts = store.privacy.terms()
    return [
        {"terms": None if t is None else texts[t].text, "sources": s, "faces": n}
        for t, s, n in store.privacy.terms_use(item_ids)
    ]


def terms_document(summary: list[dict[str, Any]]) -> str | None:
    """terms.md of a batch or review folder: each entry's terms in full, or None when no
    terms are recorded for any of its faces."""
    if all(s["terms"] is None for s in summary):
        return None
    lines = ["# Terms these faces were collected under", ""]
    for s in summary:
        lines += [f"## {s['faces']} face(s) from {s['sources']} file(s)", "",
                  s["terms"] or "No terms recorded: ask before using these faces.", ""]  # fmt: skip
    return "\n".join(lines)


def terms_markdown(summary: list[dict[str, Any]]) -> list[str]:
    """A model card's section on the terms of its training faces (markdown lines)."""
    lines = ["## Source terms", ""]
    if not summary:
        return [*lines, "No training faces.", ""]
    lines += ["The faces were collected under these terms (as `alface preprocess "
              "--source-terms` recorded them per input file):", ""]  # fmt: skip
    for s in summary:
        what = " ".join((s["terms"] or f"*{NONE}*").split())
        lines.append(f"- {s['faces']} face(s) from {s['sources']} file(s): {what}")
    if any(s["terms"] is None for s in summary):
        lines += ["", "Faces with no recorded terms: check that their use is allowed."]
    return [*lines, ""]
