"""`alface predict`'s work: scan inputs for faces, classify them, audit who appears, write it all.

One run (:func:`predict`): :class:`~alface.faces.scan.Scan` finds the faces (as preprocess
does, nothing stored), a :class:`~alface.deploy.predictor.Predictor` (a checkpoint or an export)
gives each its probabilities, ``faces.csv`` gets a row per face, and
:func:`~alface.audit.footage.audit_footage` estimates each group's share of faces and of screen
time, corrected with the held-out labeled faces and, when people labeled the run's random
sample (``--gold``), by PPI. Out come ``summary.json``, ``summary.md`` and the plots. With
``sample`` N, N faces drawn at random are written as a label batch (:mod:`alface.audit.sample`);
the labels come back with ``gold``, which re-audits the same run from its faces.csv (the inputs,
model and settings must be the ones the sample was drawn with: the run key checks it).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from alface import __version__
from alface.audit import facefile
from alface.audit.footage import MIN_FACES, FaceTable, FootageAudit, SetAudit, audit_footage
from alface.audit.plots import plot_shares, plot_timeline
from alface.audit.quantify import DEFAULT_THRESHOLD
from alface.audit.sample import SAMPLE_DIR, SAMPLE_JSON, Reservoir, read_gold, write_sample
from alface.audit.summary import summary_markdown
from alface.config import Config, PreprocessConfig, TrackConfig
from alface.deploy.predictor import Predictor
from alface.errors import AlfaceError
from alface.faces.crops import write_jpeg
from alface.faces.preprocess_report import Problem
from alface.faces.scan import FoundFace, Scan
from alface.fsutil import write_file
from alface.plots import write_json
from alface.progress import ProgressFn

FACES_CSV, SUMMARY_JSON, SUMMARY_MD, PLOTS_DIR, CROPS_DIR = (
    "faces.csv", "summary.json", "summary.md", "plots", "crops",
)  # fmt: skip
_CLASSIFY_BATCH = 64


class PredictError(AlfaceError, ValueError):
    """A predict run that cannot go as asked (bad options, a gold file of another run)."""


@dataclass(frozen=True)
class PredictOptions:
    """How a run scans and audits (see `alface predict --help`)."""

    every_seconds: float = 1.0
    threshold: float = DEFAULT_THRESHOLD
    n_boot: int = 1000
    seed: int = 0
    sample: int = 0  # faces to draw for labeling (0: none)
    save_crops: bool = False
    cropped: bool = False  # the inputs are face crops: no detection
    min_faces: int = MIN_FACES


@dataclass(frozen=True, eq=False)
class PredictResult:
    """A finished run: its summary (as written), the audit, the files, and whether the faces
    were re-read from an earlier run's faces.csv."""

    summary: dict[str, Any]
    audit: FootageAudit
    files: dict[str, Path]
    reused: bool


def run_key(
    files: Sequence[Path], model_key: str, pcfg: PreprocessConfig, o: PredictOptions
) -> str:
    """A hash of what decides the faces and their probabilities: inputs (path, size, mtime),
    model, preprocess settings, sampling."""
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()]
    what = {"files": stats, "model": model_key, "pcfg": asdict(pcfg), "every": o.every_seconds,
            "cropped": o.cropped}  # fmt: skip
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def predict(
    files: Sequence[Path],
    predictor: Predictor,
    model: dict[str, Any],
    cfg: Config,
    out_dir: str | Path,
    heldout: tuple[np.ndarray, np.ndarray] | None,
    heldout_note: str,
    options: PredictOptions = PredictOptions(),
    device: Any = "cpu",
    gold: str | Path | None = None,
    progress: ProgressFn | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> PredictResult:
    """Scan ``files``, classify, audit and write the run into ``out_dir``.

    Args:
        files: input files (:func:`~alface.faces.inputs.collect_inputs`).
        predictor: the model; ``model`` describes it (source, backbone, classes, key).
        cfg: preprocess settings (``cfg.preprocess``), the label set and guidelines (the sample).
        heldout: (probabilities (M, K), labels (M,)) of held-out labeled faces, or None;
            ``heldout_note`` says where they come from.
        device: where MTCNN runs.
        gold: a labeled sample batch of an earlier run into ``out_dir`` with the same key.
    """
    out, classes, o = Path(out_dir), list(predictor.classes), options
    if gold is not None and o.sample:
        raise PredictError("--gold reads the labels of an earlier --sample: give one of them")
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(files, model["key"], cfg.preprocess, o)
    gold_info = None
    if gold is not None:
        face_ids, table, inputs, durations = _reuse(out, key, classes)
        pos, labels, blank = read_gold(
            Path(gold), face_ids, classes, out / SAMPLE_DIR / SAMPLE_JSON
        )
        gold_pair: tuple[np.ndarray, np.ndarray] | None = (pos, labels)
        gold_info = {"n": len(pos), "blank": blank, "file": str(gold), "drawn_from": len(table)}
    else:
        table, inputs, durations, sample = _scan(files, predictor, cfg.preprocess, o, device, out,
                                                 progress, on_problem, cfg.tracks)  # fmt: skip
        gold_pair = None
    audit = audit_footage(table, classes, heldout, gold_pair, durations, threshold=o.threshold,
                          n_boot=o.n_boot, seed=o.seed, min_faces=o.min_faces)  # fmt: skip
    files_out = {"faces": out / FACES_CSV} | _plots(audit, table, classes, o, durations, out)
    if gold is None and o.sample:
        if len(sample.items) < o.sample:
            raise PredictError(f"--sample {o.sample}: the run found only {len(sample.items)} faces")
        drawn = [(facefile.face_id(p + 1), where, crop) for p, (where, crop) in sample.drawn()]
        written = write_sample(out / SAMPLE_DIR, drawn, cfg, len(table), o.seed,
                               cfg.preprocess.jpeg_quality)  # fmt: skip
        _stamp(written[SAMPLE_JSON], key)
        files_out["sample batch"] = written["batch.csv"]
    summary = {
        "alface_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "run_key": key, "model": {k: v for k, v in model.items() if k != "key"},
        "settings": {"every_seconds": o.every_seconds, "threshold": o.threshold,
                     "n_boot": o.n_boot, "seed": o.seed, "min_faces": o.min_faces,
                     "cropped": o.cropped, "preprocess": asdict(cfg.preprocess)},
        "inputs": inputs, "durations": durations,
        "heldout": {"n": 0 if heldout is None else len(heldout[1]), "note": heldout_note},
        "gold": gold_info, "overall": audit.overall.to_dict(),
        "sources": [s.to_dict() for s in audit.sources],
    }  # fmt: skip
    files_out |= {"summary": out / SUMMARY_JSON, "summary (markdown)": out / SUMMARY_MD}
    summary["files"] = {k: str(v.relative_to(out)) for k, v in files_out.items()}
    write_json(summary, out / SUMMARY_JSON)
    write_file(out / SUMMARY_MD, summary_markdown(summary))
    return PredictResult(summary, audit, files_out, gold is not None)


def _scan(
    files: Sequence[Path], predictor: Predictor, pcfg: PreprocessConfig, o: PredictOptions,
    device: Any, out: Path, progress: ProgressFn | None,
    on_problem: Callable[[Problem], None] | None, tcfg: TrackConfig | None = None,
) -> tuple[FaceTable, dict[str, Any], dict[str, float], Reservoir]:  # fmt: skip
    """Scan and classify every face, link the faces of each video into tracks, write
    faces.csv; the table, the scan's counts, the video durations and the random sample
    (``o.sample`` faces with their crops)."""
    scan = Scan(files, pcfg, device, o.every_seconds, o.cropped, progress, on_problem, tcfg)
    sample = Reservoir(o.sample, o.seed)
    rows: list[facefile.FaceRow] = []
    probs: list[np.ndarray] = [np.zeros((0, len(predictor.classes)))]
    buffer: list[FoundFace] = []

    def flush() -> None:
        probs.append(np.round(predictor.probs([f.crop for f in buffer]).astype(np.float64), 6))
        for f in buffer:
            rows.append(facefile.FaceRow(f.source, f.kind, f.frame, f.time, f.seconds, f.box,
                                         f.prob))  # fmt: skip
            if o.save_crops:
                fid = facefile.face_id(len(rows))
                write_jpeg(f.crop, out / CROPS_DIR / f"{fid}.jpg", pcfg.jpeg_quality)
            if o.sample:
                sample.offer(({"source": f.source, "frame": f.frame,
                               "time_s": None if f.time is None else round(f.time, 3)}, f.crop))  # fmt: skip
        buffer.clear()

    for faces in scan:
        buffer += faces
        if len(buffer) >= _CLASSIFY_BATCH:
            flush()
    if buffer:
        flush()
    sources = np.array([r.source for r in rows], dtype=object)
    tracks = scan.track_ids(sources)
    rows = [replace(r, track=int(k)) if k >= 0 else r for r, k in zip(rows, tracks, strict=True)]
    p = np.concatenate(probs)
    writer = facefile.FaceWriter(out / FACES_CSV, predictor.classes, o.threshold)
    writer.write(rows, p)
    writer.close()
    table = FaceTable(
        sources, np.array([r.kind for r in rows], dtype=object),
        np.array([np.nan if r.time is None else r.time for r in rows], dtype=np.float64),
        np.array([np.nan if r.seconds is None else r.seconds for r in rows], dtype=np.float64),
        p, tracks if (tracks >= 0).any() else None,
    )  # fmt: skip
    inputs = scan.report.to_dict()
    return table, inputs, {k: round(v, 3) for k, v in scan.report.durations.items()}, sample


def _reuse(
    out: Path, key: str, classes: list[str]
) -> tuple[list[str], FaceTable, dict[str, Any], dict[str, float]]:
    """The faces of the earlier run in ``out`` that drew the sample (same run key)."""
    sample_json = out / SAMPLE_DIR / SAMPLE_JSON
    try:
        drawn_key = json.loads(sample_json.read_text(encoding="utf-8")).get("run_key")
        summary = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise PredictError(
            f"--gold needs the run that drew the sample in {out} (its {SUMMARY_JSON} and "
            f"{SAMPLE_DIR}/{SAMPLE_JSON}): run with --sample N into this --out first"
        ) from None
    if drawn_key != key or summary.get("run_key") != key:
        raise PredictError(
            f"the inputs, model or settings differ from those the sample in {out} was drawn "
            "with: give the same ones (the faces and their ids would not be the same)"
        )
    face_ids, table = facefile.read_faces(out / FACES_CSV, classes)
    return face_ids, table, summary["inputs"], summary.get("durations", {})


def _stamp(sample_json: Path, key: str) -> None:
    """Record the run key in sample.json (what --gold checks)."""
    info = json.loads(sample_json.read_text(encoding="utf-8")) | {"run_key": key}
    write_file(sample_json, json.dumps(info, indent=1) + "\n")


def _plots(
    audit: FootageAudit, table: FaceTable, classes: list[str], o: PredictOptions,
    durations: dict[str, float], out: Path,
) -> dict[str, Path]:  # fmt: skip
    """shares.png (all inputs), and per video source its shares (when audited) and timeline."""
    folder = out / PLOTS_DIR
    folder.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    if (p := plot_shares(audit.overall, folder / "shares.png", "All inputs")) is not None:
        files["shares plot"] = p
    for n, s in enumerate(audit.sources, start=1):
        if s.kind != "video":
            continue
        stem = f"{n:02d}-{_slug(Path(s.name).stem)}"
        mask = table.sources == s.name
        dur = durations.get(s.name) or float(np.nansum(table.seconds[mask])) or 1.0
        files[f"timeline {s.name}"] = plot_timeline(
            table.times[mask], table.seconds[mask], table.probs[mask], classes, o.threshold, dur,
            folder / f"{stem}-timeline.png", Path(s.name).name,
        )  # fmt: skip
        if _audited(s) and (p := plot_shares(s, folder / f"{stem}-shares.png", Path(s.name).name)):
            files[f"shares {s.name}"] = p
    return files


def _audited(s: SetAudit) -> bool:
    return s.faces is not None or s.screen_time is not None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:40] or "source"
