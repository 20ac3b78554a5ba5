"""Write a label batch for people: batch.csv (a spreadsheet), tasks.json (Label Studio), a
labeling config, a contact sheet, and the labeling guidelines.

Pair annotation: items sent to two annotators (``annotators == 2``) are in batch.csv and
tasks.json (for annotator A, who labels everything) and also in pairs.csv and pairs.json (for
annotator B, who labels only those, in a separate copy or project, so the two labels are
independent). Every file is written under a temporary name and renamed.

Privacy (docs/PRIVACY.md): the files hold references to crops, never copies, and the contact
sheet thumbnails of ``annotate.sheet_thumb`` px. Label Studio's local-files server serves the
work dir only: a registered crop outside it (``preprocess --cropped``, perhaps a full-size
photo with its EXIF location) is shown from a copy in WORKDIR/labeling/, cut down to
``preprocess.crop_size`` px and without metadata (``alface forget`` removes it). When faces of
the batch were collected under recorded terms, terms.md lists them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from alface.annotate import AnnotationError
from alface.annotate.cells import escape_cell
from alface.annotate.outdir import LABELING_DIR, write_whole
from alface.annotate.sheet import Group, contact_sheet
from alface.config import CONFIG_ROOT, Config
from alface.fsutil import copy_file, write_file
from alface.privacy.terms import terms_document, terms_summary
from alface.store import Item, Store

LOCAL_FILES_URL = "/data/local-files/?d="
LS_ENV = "label_studio.env"
FROM_NAME, TO_NAME = "label", "image"  # the Choices and Image tag names in label_config.xml
BATCH_COLUMNS = ("n", "item", "label", "annotator", "predicted", "entropy", "cluster", "reason",
                 "annotators", "track", "crop_path")  # fmt: skip
REVIEW_COLUMNS = ("n", "item", "label", "annotator", "kind", "labels", "crop_path")


def choose_pairs(n_items: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A bool mask (n_items,) marking ceil(fraction * n_items) items, drawn by ``rng``, for two
    annotators; at least one item when ``fraction`` > 0."""
    if not 0.0 <= fraction <= 1.0:
        raise AnnotationError(f"annotate.pair_fraction must be in [0, 1], got {fraction}")
    mask = np.zeros(n_items, dtype=bool)
    k = min(n_items, math.ceil(fraction * n_items - 1e-9))
    mask[rng.choice(n_items, size=k, replace=False)] = True
    return mask


def assign_pairs(
    entries: Sequence[dict[str, Any]], fraction: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Copies of batch ``entries`` with ``annotators`` set to 2 for a paired share, else 1."""
    mask = choose_pairs(len(entries), fraction, rng)
    return [{**e, "annotators": 2 if m else 1} for e, m in zip(entries, mask, strict=True)]


def write_batch(
    out_dir: Path,
    store: Store,
    entries: Sequence[dict[str, Any]],
    cfg: Config,
    batch_id: int,
    image_root_url: str | None = None,
) -> dict[str, Path]:
    """Write batch ``batch_id`` into ``out_dir``; returns the written paths by file name.

    ``entries`` hold item_id and optionally cluster, reason, score, predicted, probs (class
    probabilities, for the prediction's confidence) and annotators (1 or 2).
    """
    guidelines = guidelines_path(cfg)
    rows = store.items.get([int(e["item_id"]) for e in entries])
    score_name = cfg.select.uncertainty
    columns = tuple(score_name if c == "entropy" else c for c in BATCH_COLUMNS)
    records = [
        _record(n, e, row, score_name)
        for n, (e, row) in enumerate(zip(entries, rows, strict=True), 1)
    ]
    tasks = [
        _task(store, row, n, e, cfg, batch_id, image_root_url)
        for n, (e, row) in enumerate(zip(entries, rows, strict=True), start=1)
    ]
    paired = [i for i, r in enumerate(records) if r["annotators"] == 2]
    sheet = _cluster_groups(store, records, rows)
    terms = terms_document(terms_summary(store, [r.id for r in rows]))
    if image_root_url is None:
        labeling_copies(store, rows, cfg)

    def write(folder: Path) -> dict[str, Path]:
        out = {
            "batch.csv": _write_csv(folder / "batch.csv", columns, records),
            "tasks.json": _write_json(folder / "tasks.json", tasks),
        }
        if paired:
            pairs = [records[i] for i in paired]
            out["pairs.csv"] = _write_csv(folder / "pairs.csv", columns, pairs)
            out["pairs.json"] = _write_json(folder / "pairs.json", [tasks[i] for i in paired])
        env = None if image_root_url is not None else store.root
        return out | _write_common(folder, cfg, sheet, guidelines, terms=terms, env=env)

    return write_whole(out_dir, write, store.root, {"batch": int(batch_id)})


def _cluster_groups(
    store: Store, records: Sequence[dict[str, Any]], rows: Sequence[Item]
) -> list[Group]:
    """The batch's faces by cluster (in cluster order) for the contact sheet."""
    groups: dict[Any, list[tuple[Path, str]]] = defaultdict(list)
    for r, row in zip(records, rows, strict=True):
        track = "" if row.track is None else f"t{row.track} "  # the face track, if any
        caption = f"{r['n']} {track}{r['reason']}" + (", pair" if r["annotators"] == 2 else "")
        groups[r["cluster"]].append((row.crop_file(store.root), caption.strip()))
    order = sorted(groups, key=lambda k: (k == "", k if k != "" else 0))
    return [(f"cluster {k}" if k != "" else "no cluster", groups[k]) for k in order]


def _record(n: int, e: dict[str, Any], row: Item, score_name: str) -> dict[str, Any]:
    """One batch.csv row; ``label`` and ``annotator`` are left for the person to fill."""
    score, cluster = e.get("score"), e.get("cluster")
    return {
        "n": n, "item": row.uid, "label": "", "annotator": "",
        "predicted": e.get("predicted") or "",
        score_name: "" if score is None else f"{float(score):.4f}",
        "cluster": "" if cluster is None else int(cluster), "reason": e.get("reason") or "",
        "annotators": int(e.get("annotators", 1)),
        "track": "" if row.track is None else row.track, "crop_path": row.crop_path,
    }  # fmt: skip


def write_review(
    out_dir: Path,
    store: Store,
    cfg: Config,
    item_ids: Sequence[int] | None = None,
    image_root_url: str | None = None,
) -> dict[str, Path]:
    """Write the review queue (or ``item_ids``) into ``out_dir``: review.csv (each item's
    current labels, a label column for the reviewer, kind=review), review_tasks.json whose
    label config shows every annotator's label (none pre-filled: a pre-annotation would show
    one of them only, and sway the reviewer), sheet.png grouped by the labels in conflict."""
    guidelines = guidelines_path(cfg)
    ids = list(store.labels.review_queue() if item_ids is None else item_ids)
    by_item: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for a in store.labels.annotations(ids):
        if a.kind != "review":
            by_item[a.item_id].append((a.annotator, a.label))
    records, tasks = [], []
    groups: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    items = store.items.get(ids)
    terms = terms_document(terms_summary(store, ids))
    if image_root_url is None:
        labeling_copies(store, items, cfg)
    for n, row in enumerate(items, start=1):
        labels = by_item[row.id]
        shown = "; ".join(f"{who}={lab}" for who, lab in labels)
        records.append({
            "n": n, "item": row.uid, "label": "", "annotator": "", "kind": "review",
            "labels": shown, "crop_path": row.crop_path,
        })  # fmt: skip
        data = {"image": image_url(store, row, image_root_url), "item": row.uid, "n": n,
                "kind": "review", "labels": shown}  # fmt: skip
        tasks.append({"data": data})
        groups[" vs ".join(sorted({lab for _, lab in labels}))].append(
            (row.crop_file(store.root), str(n))
        )

    def write(folder: Path) -> dict[str, Path]:
        out = {
            "review.csv": _write_csv(folder / "review.csv", REVIEW_COLUMNS, records),
            "review_tasks.json": _write_json(folder / "review_tasks.json", tasks),
        }
        env = None if image_root_url is not None else store.root
        return out | _write_common(
            folder, cfg, sorted(groups.items()), guidelines, review=True, terms=terms, env=env
        )

    return write_whole(out_dir, write, store.root)


def _write_common(
    out_dir: Path,
    cfg: Config,
    groups: Sequence[Group],
    guidelines: Path | None,
    review: bool = False,
    terms: str | None = None,
    env: Path | None = None,
) -> dict[str, Path]:
    """label_config.xml, sheet.png (one header per group, with its size), guidelines.md,
    terms.md (when there are terms) and label_studio.env (Label Studio's local-files settings
    for work dir ``env``, when the tasks point at them)."""
    groups = [(f"{head} · {len(faces)} faces", faces) for head, faces in groups]
    config = label_config(cfg, review)
    out = {
        "label_config.xml": write_file(out_dir / "label_config.xml", config),
        "sheet.png": write_sheet(out_dir / "sheet.png", groups, cfg),
    }
    if guidelines is not None:
        out["guidelines.md"] = copy_file(guidelines, out_dir / "guidelines.md")
    if terms is not None:
        out["terms.md"] = write_file(out_dir / "terms.md", terms)
    if env is not None:
        out[LS_ENV] = write_file(out_dir / LS_ENV, label_studio_env(env))
    return out


def label_studio_env(root: Path) -> str:
    """The settings Label Studio's local-files server needs for the tasks of work dir ``root``:
    its document root is the work dir, and only it (never /: see docs/PRIVACY.md)."""
    return (
        "# Label Studio's local files for this batch: the work dir, and nothing else (never /).\n"
        "# set -a; . ./label_studio.env; set +a; label-studio start   (docs/LABELING.md)\n"
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true\n"
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={shlex.quote(str(Path(root).resolve()))}\n"
        "LATEST_VERSION_CHECK=false\n"
    )


def labeling_copies(store: Store, rows: Sequence[Item], cfg: Config) -> None:
    """For the crops of ``rows`` outside the work dir, the copies Label Studio shows
    (WORKDIR/labeling/UID.jpg: at most ``preprocess.crop_size`` px, no metadata); a copy
    already there is kept, a crop that cannot be read is skipped (the task shows nothing)."""
    from alface.faces.crops import write_jpeg
    from alface.faces.images import ImageError, load_image

    size = cfg.preprocess.crop_size
    for row in rows:
        if not Path(row.crop_path).is_absolute():
            continue
        dst = store.root / LABELING_DIR / f"{row.uid}.jpg"
        if dst.exists():
            continue
        try:
            img = load_image(Path(row.crop_path), cfg.preprocess.max_megapixels)
        except (ImageError, OSError):
            continue
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        write_jpeg(np.asarray(img.convert("RGB")), dst, cfg.preprocess.jpeg_quality)


def _task(
    store: Store, row: Item, n: int, e: dict[str, Any], cfg: Config, batch_id: int,
    image_root_url: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A Label Studio task for one entry, its model prediction as a pre-annotation."""
    score = e.get("score")
    task: dict[str, Any] = {
        "data": {
            "image": image_url(store, row, image_root_url), "item": row.uid,
            "batch": int(batch_id), "n": n, "predicted": e.get("predicted"),
            "score": None if score is None else float(score), "cluster": e.get("cluster"),
            "reason": e.get("reason"), "annotators": int(e.get("annotators", 1)), "kind": "label",
            "track": row.track,
        }
    }  # fmt: skip
    if task["data"]["cluster"] is not None:
        task["data"]["cluster"] = int(task["data"]["cluster"])
    if e.get("predicted") in cfg.labels.classes:
        probs = e.get("probs")
        conf = None if probs is None else float(np.max(probs))
        task["predictions"] = [_prediction(e["predicted"], f"alface-batch-{batch_id}", conf)]
    return task


def _prediction(label: str, model_version: str, score: float | None = None) -> dict[str, Any]:
    """A Label Studio prediction choosing ``label``."""
    pred: dict[str, Any] = {
        "model_version": model_version,
        "result": [
            {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
             "value": {"choices": [label]}}
        ],
    }  # fmt: skip
    if score is not None:
        pred["score"] = score
    return pred


def label_config(cfg: Config, review: bool = False) -> str:
    """A Label Studio labeling config: the face and one required choice among the classes;
    for a review, the annotators' labels (task field ``labels``) above the choice."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in cfg.labels.classes)
    shown = '  <Header value="Labels so far: $labels"/>\n' if review else ""
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f"{shown}"
        f"  <Header value={quoteattr(cfg.labels.name + ':')}/>\n"
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true"'
        ' required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def image_url(store: Store, row: Item, image_root_url: str | None = None) -> str:
    """The URL Label Studio shows for a crop: ``image_root_url`` (default: Label Studio's
    local files, with the document root at WORKDIR, never /) + the crop path relative to
    WORKDIR; a crop outside WORKDIR is shown from its copy in WORKDIR/labeling/ (see
    :func:`labeling_copies`), or by its absolute path under another ``image_root_url``."""
    path = row.crop_file(store.root)
    try:
        rel = path.resolve().relative_to(store.root.resolve()).as_posix()
    except ValueError:
        rel = (f"{LABELING_DIR}/{row.uid}.jpg" if image_root_url is None
               else path.resolve().as_posix().lstrip("/"))  # fmt: skip
    return (LOCAL_FILES_URL if image_root_url is None else image_root_url) + quote(rel, safe="/")


def guidelines_path(cfg: Config) -> Path | None:
    """The guidelines file of ``annotate.guidelines`` (relative: to the current directory,
    else to the alface checkout), or None when unset."""
    if not cfg.annotate.guidelines:
        return None
    p = Path(cfg.annotate.guidelines).expanduser()
    for cand in (p, CONFIG_ROOT.parent / p) if not p.is_absolute() else (p,):
        if cand.is_file():
            return cand
    raise AnnotationError(f"annotate.guidelines: file not found: {cfg.annotate.guidelines}")


def write_sheet(path: Path, groups: Sequence[Group], cfg: Config) -> Path:
    """The contact sheet of ``groups`` as a PNG at ``path``."""
    buf = io.BytesIO()
    contact_sheet(groups, thumb=cfg.annotate.sheet_thumb).save(buf, format="PNG")
    return write_file(path, buf.getvalue())


def _write_csv(path: Path, columns: Sequence[str], records: Sequence[dict[str, Any]]) -> Path:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: escape_cell(v) for k, v in r.items()} for r in records)  # no formulas
    return write_file(path, buf.getvalue().encode("utf-8"))


def _write_json(path: Path, data: Any) -> Path:
    return write_file(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode())
