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
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from alface.annotate import AnnotationError
from alface.annotate.cells import unescape_cell
from alface.annotate.outdir import LABELING_DIR
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
    """'label-studio' when the text is JSON (a list or object, or any other JSON value: a
    wrong export, which the JSON reader then names), else 'csv'."""
    if text.lstrip()[:1] in ("[", "{"):
        return "label-studio"
    try:
        json.loads(text)
    except ValueError:
        return "csv"
    return "label-studio"


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
            cells = {
                name: unescape_cell(record[i].strip()) for name, i in col.items() if i < len(record)
            }
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


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number",
               float: "a number", bool: "true/false", type(None): "null"}  # fmt: skip
_JSON_MIN_KEYS = ("label", "annotator", "annotation_id")  # what a JSON-MIN row has, not a task


def read_label_studio(text: str) -> tuple[list[LabelRow], list[RowProblem], int]:
    """Rows of a Label Studio export: JSON (one row per submitted annotation with a choice) or
    JSON-MIN (one flat row per annotation: the task's fields, ``label``, ``annotator``).

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
        raise AnnotationError(
            f"expected a Label Studio JSON export (a list of tasks), got "
            f"{_JSON_TYPES.get(type(data), type(data).__name__)}"
        )
    if not data:
        raise AnnotationError("the export holds no tasks: export the project after labeling")
    rows: list[LabelRow] = []
    problems: list[RowProblem] = []
    for number, task in enumerate(data, start=1):
        if isinstance(task, dict) and "data" not in task and any(k in task for k in _JSON_MIN_KEYS):
            row, why = _json_min_row(number, task)
            if why:
                problems.append(RowProblem(number, row.ref if row else "", why))
            else:
                rows.append(row)
            continue
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            problems.append(RowProblem(number, "", "not a Label Studio task (no 'data' object)"))
            continue
        ref, alt = task_item(task["data"])
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
                rows.append(replace(row, alt_ref=alt))
        if len(rows) + len(problems) == before:  # not labeled yet: a blank row
            rows.append(LabelRow(ref, "", row=number, alt_ref=alt))
    return rows, problems, len(data)


def task_item(data: dict[str, Any]) -> tuple[str, str | None]:
    """(reference, second reference) of the item a task shows: ``data.item`` (the uid), else
    the path in ``data.image``. Label Studio's local-files URL holds a path relative to its
    document root (WORKDIR) or, for a crop outside it, the absolute path without its leading /:
    the second reference is that absolute path."""
    item = data.get("item")
    if isinstance(item, str) and item.strip():
        return item.strip(), None
    image = data.get("image")
    if not isinstance(image, str):
        return "", None
    query = parse_qs(urlsplit(image).query)
    if "d" not in query:
        return image, None
    path = query["d"][0]
    name = Path(path)
    if len(name.parts) == 2 and name.parts[0] == LABELING_DIR:  # a copy of a crop outside it
        return name.stem, None
    return path, (None if path.startswith("/") else "/" + path)


def _json_min_row(number: int, task: dict[str, Any]) -> tuple[LabelRow | None, str | None]:
    """A JSON-MIN row as a label row, or why it is unusable."""
    ref, alt = task_item(task)
    value = task.get("label")
    if isinstance(value, dict):  # several choices allowed: {"choices": [...]}
        value = value.get("choices")
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            return LabelRow(ref, ""), f"expected exactly one choice, got {value!r}"
        value = value[0]
    if value is not None and not isinstance(value, str):
        return LabelRow(ref, ""), f"label is not a class name: {value!r}"
    who, why = annotator_name(task.get("annotator"))
    if why:
        return LabelRow(ref, ""), why
    kind = task.get("kind") if isinstance(task.get("kind"), str) else None
    return LabelRow(ref, (value or "").strip(), who, kind, number, alt), None


def _annotation_row(
    number: int, ref: str, kind: Any, ann: Any
) -> tuple[LabelRow | None, str | None]:
    """One annotation as a row, or why it cannot be read; (None, None) when it is empty."""
    if not isinstance(ann, dict) or not isinstance(ann.get("result", []), list):
        return None, "an annotation is not an object with a 'result' list"
    who, why = annotator_name(ann.get("completed_by"))
    if why:
        return None, why
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


def annotator_name(completed_by: Any) -> tuple[str | None, str | None]:
    """(annotator, problem) for a Label Studio ``completed_by`` (or JSON-MIN ``annotator``).

    A person is ``ls:<user id>`` whether the export gives the id alone or a user object (which
    also carries the email), so one person is one annotator across exports; ``ls:<email>``
    only when no id is given. (None, None) when nobody is named.
    """
    who = completed_by
    if isinstance(who, dict):
        who = who.get("id") if who.get("id") is not None else who.get("email")
        if who is None:
            return None, "completed_by names no user id or email"
    if who is None or who == "":
        return None, None
    if isinstance(who, bool) or not isinstance(who, int | str) or not str(who).strip():
        return None, f"completed_by is not a user id or email: {completed_by!r}"[:200]
    return f"ls:{str(who).strip()}", None
