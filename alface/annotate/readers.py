"""Label files into raw rows: a CSV (``item,label[,annotator]``) or a Label Studio JSON export.

Readers only parse: they do not know the store or the label set. A problem confined to one
row (or one Label Studio task) is returned as a :class:`RowProblem`; a file that cannot be
read at all (wrong encoding, broken CSV quoting, invalid JSON) raises :class:`AnnotationError`.
Rows are :class:`~alface.annotate.record.LabelRow` s, what :func:`record_labels` takes.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from alface.annotate import AnnotationError
from alface.annotate.record import LabelRow, RowProblem
from alface.classes import UNUSABLE

ITEM_COLUMNS = ("item", "label")
ITEM_ALIASES = ("item", "path")  # a labels CSV of a data set names its column "path"


def decode(raw: bytes) -> str:
    """The text of a label file, which must be UTF-8 (a BOM is allowed)."""
    if raw.startswith(b"PK\x03\x04"):
        raise AnnotationError("this is a spreadsheet (.xlsx/.ods), not a CSV; save it as CSV UTF-8")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise AnnotationError("wrong encoding: the file is UTF-16; save it as UTF-8 (CSV UTF-8)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(
            f"wrong encoding: byte 0x{raw[e.start]:02x} at offset {e.start} is not UTF-8 "
            "(Latin-1 or Windows-1252?); save the file as UTF-8 (CSV UTF-8)"
        ) from e


def detect_format(text: str) -> str:
    """'label-studio' when the text is JSON (starts with [ or {), else 'csv'."""
    return "label-studio" if text.lstrip()[:1] in ("[", "{") else "csv"


def read_csv(text: str) -> tuple[list[LabelRow], list[RowProblem], bool]:
    """Rows of a CSV with a header naming ``item`` (or ``path``) and ``label`` (``annotator``,
    ``kind`` and ``crop_path`` optional; other columns ignored). Returns rows, problems and
    whether the file has an annotator column."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise AnnotationError("the file is empty; expected a header line with item,label")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(lines[0]), strict=True)
    header = [h.strip().lower() for h in next(reader)]
    item_col = next((c for c in ITEM_ALIASES if c in header), "item")
    missing = [c for c in (item_col, "label") if c not in header]
    if missing:
        raise AnnotationError(
            f"the header must name the columns item and label (or path,label; missing "
            f"{', '.join(missing)}; found {','.join(h for h in header if h) or 'nothing'})"
        )
    if len(set(header)) < len(header):
        raise AnnotationError(f"the header repeats a column name: {', '.join(header)}")
    col = {name: i for i, name in enumerate(header)}
    rows, problems = [], []
    try:
        for row_no, record in enumerate(reader, start=2):
            if not any(v.strip() for v in record):
                continue
            cells = {name: record[i].strip() for name, i in col.items() if i < len(record)}
            if len(record) != len(header):
                problems.append(
                    RowProblem(row_no, cells.get(item_col, ""), f"expected {len(header)} "
                               f"fields, got {len(record)} (a value with a comma needs quotes)")
                )  # fmt: skip
                continue
            rows.append(
                LabelRow(
                    cells[item_col], cells["label"], annotator=cells.get("annotator") or None,
                    kind=cells.get("kind") or None, row=row_no,
                    alt_ref=cells.get("crop_path") or None,
                )
            )  # fmt: skip
    except csv.Error as e:
        raise AnnotationError(f"malformed CSV at line {reader.line_num}: {e}") from e
    return rows, problems, "annotator" in col


def _delimiter(header: str) -> str:
    """Comma, or the semicolon / tab some spreadsheets write instead."""
    for sep in (",", ";", "\t"):
        if sep in header:
            return sep
    return ","


def read_label_studio(text: str) -> tuple[list[LabelRow], list[RowProblem], int]:
    """Rows of a Label Studio JSON export (one per submitted annotation with a choice).

    Returns rows, problems and the number of tasks. A cancelled (skipped) annotation answers
    ``unusable``; a task without any label gives one blank row.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise AnnotationError("expected a Label Studio JSON export: a list of tasks")
    rows: list[LabelRow] = []
    problems: list[RowProblem] = []
    for number, task in enumerate(data, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(RowProblem(number, "", "not a Label Studio task (no 'data' object)"))
            continue
        ref = task_item(task["data"])
        kind = task["data"].get("kind")
        anns = task.get("annotations", task.get("completions")) or []
        if not isinstance(anns, list):
            problems.append(RowProblem(number, ref, "'annotations' is not a list"))
            continue
        before = len(rows) + len(problems)
        for ann in anns:
            row, why = _annotation_row(number, ref, kind, ann)
            if why:
                problems.append(RowProblem(number, ref, why))
            elif row is not None:
                rows.append(row)
        if len(rows) + len(problems) == before:  # not labeled yet: a blank row
            rows.append(LabelRow(ref, "", row=number))
    return rows, problems, len(data)


def task_item(data: dict[str, Any]) -> str:
    """The item a task shows: ``data.item`` (the uid), else the path in ``data.image``."""
    item = data.get("item")
    if isinstance(item, str) and item.strip():
        return item.strip()
    image = data.get("image")
    if not isinstance(image, str):
        return ""
    query = parse_qs(urlsplit(image).query)
    return query["d"][0] if "d" in query else image


def _annotation_row(
    number: int, ref: str, kind: Any, ann: Any
) -> tuple[LabelRow | None, str | None]:
    """One annotation as a row, or why it cannot be read; (None, None) when it is empty."""
    if not isinstance(ann, dict) or not isinstance(ann.get("result", []), list):
        return None, "an annotation is not an object with a 'result' list"
    who = annotator_name(ann.get("completed_by"))
    kind = kind if isinstance(kind, str) else None
    if ann.get("was_cancelled"):  # Skip in Label Studio: the face cannot be labeled
        return LabelRow(ref, UNUSABLE, annotator=who, kind=kind, row=number), None
    results = [
        r for r in ann.get("result", []) if isinstance(r, dict) and r.get("type") == "choices"
    ]
    if len(results) > 1:
        results = [r for r in results if r.get("from_name") == "label"] or results
    if not results:
        return None, None
    if len(results) > 1:
        return None, "several choice fields in one annotation; expected one (from_name 'label')"
    choices = (results[0].get("value") or {}).get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], str):
        return None, f"expected exactly one choice, got {choices!r}"
    return LabelRow(ref, choices[0].strip(), annotator=who, kind=kind, row=number), None


def annotator_name(completed_by: Any) -> str | None:
    """'ls:<email>' or 'ls:<user id>' for a Label Studio ``completed_by`` (int or object)."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    if completed_by is None or completed_by == "":
        return None
    return f"ls:{completed_by}"
