"""The gold sample of an audit: faces drawn at random for people to label, and their labels back.

`alface predict --sample N` draws N faces uniformly without replacement from every face the
run finds (:class:`Reservoir`: one pass, only the N crops held in memory), and writes them as
a label batch like the loop's (:mod:`alface.annotate.export`: batch.csv, tasks.json for Label
Studio, label_config.xml, a contact sheet, the guidelines), with the crops beside them, and
``sample.json`` listing the faces drawn. No prediction is shown: it would sway the labels that
check it. `--gold FILE` reads the filled batch.csv (or a Label Studio export) back into
(positions, class indices) for PPI (:mod:`alface.audit.ppi`); an empty label means "not a
usable face" (the guidelines) and leaves the face out of the gold sample.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from alface.annotate import AnnotationError
from alface.annotate.cells import escape_cell
from alface.annotate.export import (
    LOCAL_FILES_URL,
    copy_file,
    guidelines_path,
    label_config,
    write_sheet,
)
from alface.annotate.readers import decode, detect_format, read_csv, read_label_studio
from alface.classes import canonical_label
from alface.config import Config
from alface.faces.crops import write_jpeg
from alface.fsutil import write_file

SAMPLE_DIR = "sample"
SAMPLE_JSON = "sample.json"
COLUMNS = ("n", "item", "label", "annotator", "source", "frame", "time_s", "crop_path")


class Reservoir:
    """A uniform random sample, without replacement, of ``size`` items of a stream (Algorithm R):
    after any number of offers, every item offered so far is in it with the same probability."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.rng, self.seen = size, np.random.default_rng(seed), 0
        self.items: list[tuple[int, Any]] = []  # (position in the stream, payload)

    def offer(self, payload: Any) -> None:
        """Offer the next item of the stream."""
        if len(self.items) < self.size:
            self.items.append((self.seen, payload))
        else:
            j = int(self.rng.integers(self.seen + 1))
            if j < self.size:
                self.items[j] = (self.seen, payload)
        self.seen += 1

    def drawn(self) -> list[tuple[int, Any]]:
        """(position, payload) of the sample, by position."""
        return sorted(self.items, key=lambda x: x[0])


def write_sample(
    out_dir: Path, faces: Sequence[tuple[str, dict[str, Any], np.ndarray]], cfg: Config,
    n_faces: int, seed: int, jpeg_quality: int = 95,
) -> dict[str, Path]:  # fmt: skip
    """Write the sample batch into ``out_dir``: ``faces`` are (face id, its row fields: source,
    frame, time_s, crop (h, w, 3) uint8) in the order drawn; ``n_faces`` faces were drawn from."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records, tasks, thumbs = [], [], []
    for n, (fid, where, crop) in enumerate(faces, start=1):
        rel = f"crops/{fid}.jpg"
        write_jpeg(crop, out_dir / rel, jpeg_quality)
        records.append({"n": n, "item": fid, "label": "", "annotator": "",
                        "source": where["source"], "frame": _cell(where.get("frame")),
                        "time_s": _cell(where.get("time_s")), "crop_path": rel})  # fmt: skip
        tasks.append({"data": {"image": LOCAL_FILES_URL + quote(rel, safe="/"), "item": fid,
                               "n": n, "kind": "label"}})  # fmt: skip
        thumbs.append((out_dir / rel, str(n)))
    out = {
        "batch.csv": write_file(out_dir / "batch.csv", _csv(records)),
        "tasks.json": write_file(out_dir / "tasks.json", _json(tasks)),
        "label_config.xml": write_file(out_dir / "label_config.xml", label_config(cfg).encode()),
        "sheet.png": write_sheet(out_dir / "sheet.png", [(f"{len(faces)} faces", thumbs)], cfg),
    }
    if (guide := guidelines_path(cfg)) is not None:
        out["guidelines.md"] = copy_file(guide, out_dir / "guidelines.md")
    info = {"faces": [fid for fid, _, _ in faces], "drawn_from": n_faces, "seed": seed,
            "how": "uniform without replacement over every face of the run (reservoir)"}  # fmt: skip
    out[SAMPLE_JSON] = write_file(out_dir / SAMPLE_JSON, _json(info))
    return out


def _cell(v: Any) -> str:
    return "" if v is None else str(v)


def _csv(records: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: escape_cell(v) for k, v in r.items()} for r in records)  # no formulas
    return buf.getvalue().encode("utf-8")


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def read_gold(
    path: Path, face_ids: Sequence[str], classes: Sequence[str], sample_json: Path
) -> tuple[np.ndarray, np.ndarray, int]:
    """(positions (n,) in ``face_ids``, class indices (n,), blank labels left out) of a labeled
    sample batch (CSV or Label Studio export). Every face must be one drawn into the sample."""
    if not sample_json.is_file():
        raise AnnotationError(
            f"--gold needs the run's random sample: no {sample_json} (run with --sample N first, "
            "into the same --out)"
        )
    drawn = set(json.loads(sample_json.read_text(encoding="utf-8"))["faces"])
    text = decode(Path(path).read_bytes())
    rows = read_csv(text)[0] if detect_format(text) == "csv" else read_label_studio(text)[0]
    where = {fid: i for i, fid in enumerate(face_ids)}
    labels: dict[str, int] = {}
    blank = 0
    for r in rows:
        if r.ref not in where or r.ref not in drawn:
            what = "this run's faces" if r.ref not in where else "the random sample"
            raise AnnotationError(f"{path}: face {r.ref!r} is not in {what}")
        if not r.label:
            blank += 1
            continue
        k = canonical_label(r.label, classes)
        if k is None:
            raise AnnotationError(f"{path}: unknown label {r.label!r} for {r.ref}; classes: "
                                  f"{', '.join(classes)}")  # fmt: skip
        if labels.setdefault(r.ref, classes.index(k)) != classes.index(k):
            raise AnnotationError(f"{path}: face {r.ref} has two different labels")
    if len(labels) < 2:
        raise AnnotationError(f"{path}: {len(labels)} labeled face(s); the gold sample needs >= 2")
    pos = np.array([where[f] for f in labels], dtype=np.int64)
    order = np.argsort(pos)
    return pos[order], np.array(list(labels.values()), dtype=np.int64)[order], blank
