"""Forgotten faces out of the batch and review folders people label from (alface forget).

The rows of batch.csv, pairs.csv and review.csv and the tasks of tasks.json, pairs.json and
review_tasks.json that show a forgotten face are removed, everything else kept as it is (a
label already typed into the file stays); sheet.png is drawn again from the rows that are left.
Files are rewritten crash-safely (alface.fsutil). A file alface did not write (a copy, a
Label Studio export) is not changed: those that name a forgotten face are reported.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alface.annotate.outdir import MARKER
from alface.annotate.sheet import Group, contact_sheet
from alface.fsutil import write_file

CSV_FILES = ("batch.csv", "pairs.csv", "review.csv")
TASK_FILES = ("tasks.json", "pairs.json", "review_tasks.json")
SHEET = "sheet.png"
KNOWN = (*CSV_FILES, *TASK_FILES, SHEET, "label_config.xml", "guidelines.md", "terms.md",
         "label_studio.env", MARKER)  # fmt: skip
_SCAN_LIMIT = 64 * 2**20  # other files larger than this are not searched


@dataclass
class Redacted:
    """What was taken out of one folder."""

    folder: Path
    rows: int = 0  # CSV rows and tasks removed
    files: list[str] = field(default_factory=list)  # files rewritten (or the sheet removed)
    others: list[str] = field(default_factory=list)  # files alface did not write that name a face


def redact_folder(folder: Path, uids: Iterable[str], root: Path, thumb: int) -> Redacted:
    """Take the faces ``uids`` out of batch or review ``folder`` (crop paths relative to WORKDIR
    ``root``; contact sheet thumbnails ``thumb`` px)."""
    folder, uids = Path(folder), set(uids)
    out = Redacted(folder)
    if not folder.is_dir():
        return out
    kept: dict[str, list[dict[str, str]]] = {}
    for name in CSV_FILES:
        if (folder / name).is_file():
            n, rows = _redact_csv(folder / name, uids)
            kept[name] = rows
            if n:
                out.rows += n
                out.files.append(name)
    for name in TASK_FILES:
        if (folder / name).is_file() and (n := _redact_tasks(folder / name, uids)):
            out.rows += n
            out.files.append(name)
    if out.rows and (folder / SHEET).is_file():
        _redraw_sheet(folder / SHEET, kept, root, thumb)
        out.files.append(SHEET)
    out.others = [p.name for p in _others(folder) if _names_any(p, uids)]
    return out


def _redact_csv(path: Path, uids: set[str]) -> tuple[int, list[dict[str, str]]]:
    """Drop the rows whose ``item`` is in ``uids``; (rows dropped, the rows kept as dicts)."""
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw[3 if bom else 0 :].decode("utf-8", "surrogateescape")
    newline = "\r\n" if "\r\n" in text else "\n"
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or "item" not in rows[0]:
        return 0, []
    head, col = rows[0], rows[0].index("item")
    body = [r for r in rows[1:] if r]
    keep = [r for r in body if len(r) <= col or r[col].strip() not in uids]
    if len(keep) < len(body):
        buf = io.StringIO(newline="")
        csv.writer(buf, lineterminator=newline).writerows([head, *keep])
        data = buf.getvalue().encode("utf-8", "surrogateescape")
        write_file(path, (b"\xef\xbb\xbf" if bom else b"") + data)
    return len(body) - len(keep), [dict(zip(head, r, strict=False)) for r in keep]


def _redact_tasks(path: Path, uids: set[str]) -> int:
    """Drop the Label Studio tasks whose ``data.item`` is in ``uids``; returns how many."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(tasks, list):
        return 0
    keep = [t for t in tasks if _task_uid(t) not in uids]
    if len(keep) < len(tasks):
        write_file(path, (json.dumps(keep, indent=1, ensure_ascii=False) + "\n").encode())
    return len(tasks) - len(keep)


def _task_uid(task: Any) -> str | None:
    data = task.get("data") if isinstance(task, dict) else None
    item = data.get("item") if isinstance(data, dict) else None
    return item.strip() if isinstance(item, str) else None


def _redraw_sheet(
    path: Path, kept: dict[str, list[dict[str, str]]], root: Path, thumb: int
) -> None:
    """Draw the contact sheet again from the rows left (batch.csv, else review.csv); without
    either it cannot be drawn, and is removed."""
    if "batch.csv" in kept:
        groups = _batch_groups(kept["batch.csv"], root)
    elif "review.csv" in kept:
        groups = _review_groups(kept["review.csv"], root)
    else:
        path.unlink()
        return
    groups = [(f"{head} · {len(faces)} faces", faces) for head, faces in groups]
    buf = io.BytesIO()
    contact_sheet(groups, thumb=thumb).save(buf, format="PNG")
    write_file(path, buf.getvalue())


def _crop(row: dict[str, str], root: Path) -> Path:
    p = Path(row.get("crop_path", ""))
    return p if p.is_absolute() else root / p


def _batch_groups(rows: list[dict[str, str]], root: Path) -> list[Group]:
    """Faces by cluster, captioned as alface.annotate.export draws them."""
    groups: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for r in rows:
        pair = ", pair" if r.get("annotators", "").strip() == "2" else ""
        caption = f"{r.get('n', '')} {r.get('reason', '')}" + pair
        groups[r.get("cluster", "").strip()].append((_crop(r, root), caption.strip()))
    order = sorted(groups, key=lambda k: (k == "", int(k) if k.lstrip("-").isdigit() else 0, k))
    return [(f"cluster {k}" if k != "" else "no cluster", groups[k]) for k in order]


def _review_groups(rows: list[dict[str, str]], root: Path) -> list[Group]:
    """Faces by the labels in conflict."""
    groups: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for r in rows:
        labels = {x.partition("=")[2] for x in r.get("labels", "").split("; ") if "=" in x}
        groups[" vs ".join(sorted(labels))].append((_crop(r, root), r.get("n", "")))
    return sorted(groups.items())


def _others(folder: Path) -> list[Path]:
    """The files in ``folder`` (and below) that alface did not write there."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and not (p.parent == folder and p.name in KNOWN)
    )  # fmt: skip


def _names_any(path: Path, uids: set[str]) -> bool:
    """Whether the file names one of ``uids`` (files over 64 MiB are not searched)."""
    try:
        if path.stat().st_size > _SCAN_LIMIT:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    return any(u.encode() in data for u in uids)
