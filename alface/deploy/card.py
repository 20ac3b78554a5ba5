"""The model card of an export: what the model is, how to feed it, how well it does, and for what.

:func:`build_card` gathers plain values (JSON, ``model_card.json``); :func:`card_markdown`
renders them for people (``model_card.md``). The per-class figures are measured on held-out
labeled faces (:mod:`alface.audit.heldout`) with :func:`class_report`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alface import __version__
from alface.privacy.terms import terms_markdown

INTENDED_USE = (
    "Measuring the representation of perceived groups in footage (share of faces and of screen "
    "time per group, per programme), with the error bars `alface predict` reports, by people "
    "who label a sample of the audited faces to check it. Not for identifying people, not for "
    "decisions about an individual, and not for inferring anyone's identity, ancestry or "
    "nationality."
)
PERCEIVED = (
    "Labels are *perceived* group: an annotator's judgement of the group a face appears to "
    "belong to, under the labeling guidelines, not a person's self-identification. The model "
    "learns those judgements, with their disagreements and biases."
)
GIVEN = "given as crops (preprocess --cropped)"
DETECTED = "cut by MTCNN (alface preprocess)"
CROP_WARNING = (
    "**Caution:** part of the training set are crops given as they were, not cut by MTCNN the "
    "way `alface predict` cuts faces from photos and video. A model trained on other crops sees "
    "other faces at predict time: on a synthetic programme, a UTKFace model trained on the "
    "chips as given counted 13 % of the faces White where 71 % were (docs/BENCHMARKS.md). "
    "Prefer crops cut by `alface preprocess` from footage like the footage to audit."
)
FORGOTTEN_WARNING = (
    "**Caution:** {n} of the faces this model was trained on were forgotten since "
    "(`alface forget`): its weights still derive from them. Retrain it (`alface train`) and "
    "export the new model; this one was exported with `--allow-forgotten`."
)
INPUT_LAYOUT = "float32 (B, 3, S, S), RGB, pixel values 0..255 (the graph normalises them)"
RESIZE = "each face crop resized whole to S x S, bilinear (Pillow), no further crop"


def class_report(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and n (true faces), accuracy and macro-F1, of a
    ``confusion`` matrix (K, K) (rows: true class, columns: predicted); a figure with nothing
    to divide by is None (and macro-F1 averages the classes with faces)."""
    m = np.asarray(confusion, dtype=np.float64)
    tp, true_n, pred_n = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    per: dict[str, dict[str, Any]] = {}
    f1s = []
    for k, c in enumerate(classes):
        p = float(tp[k] / pred_n[k]) if pred_n[k] else None
        r = float(tp[k] / true_n[k]) if true_n[k] else None
        f = 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else (
            0.0 if true_n[k] else None
        )  # fmt: skip
        if true_n[k]:
            f1s.append(f)
        per[c] = {"precision": p, "recall": r, "f1": f, "n": int(true_n[k])}
    n = int(m.sum())
    return {"n": n, "acc": float(tp.sum() / n) if n else None,
            "macro_f1": float(np.mean(f1s)) if f1s else None, "per_class": per}  # fmt: skip


def confusion_of(probs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(K, K) counts of true class (rows) vs argmax of ``probs`` (M, K) (columns)."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(targets, np.int64), np.asarray(probs).argmax(axis=1)), 1)
    return m


def build_card(
    *,
    classes: Sequence[str],
    label_name: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    backbone: str,
    mode: str,
    model: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    heldout: tuple[np.ndarray, np.ndarray] | None,
    heldout_note: str,
    training_labels: Mapping[str, int],
    files: Mapping[str, str],
    training_crops: Mapping[str, int] | None = None,
    source_terms: Sequence[Mapping[str, Any]] = (),
    forgotten: int = 0,
) -> dict[str, Any]:
    """The model card as plain data (``model_card.json``)."""
    perf = None
    if heldout is not None and len(heldout[1]):
        perf = class_report(confusion_of(*heldout, len(classes)), classes)
    return {
        "alface_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "classes": list(classes), "label_name": label_name,
        "input": {"size": int(image_size), "layout": INPUT_LAYOUT, "resize": RESIZE,
                  "mean": list(mean), "std": list(std)},
        "output": "softmax probabilities (B, K), in the order of classes",
        "backbone": backbone, "mode": mode, "model": dict(model),
        "preprocess": dict(preprocess),
        "heldout": {"note": heldout_note, "metrics": perf},
        "training_labels": {c: int(training_labels.get(c, 0)) for c in classes},
        "training_crops": dict(training_crops or {}),
        "source_terms": [dict(t) for t in source_terms], "forgotten": int(forgotten),
        "intended_use": INTENDED_USE, "labels": PERCEIVED, "files": dict(files),
    }  # fmt: skip


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def card_markdown(card: Mapping[str, Any]) -> str:
    """``model_card.md``: the card for people."""
    inp, m = card["input"], card["model"]
    lines = [
        f"# Model card: {card['label_name']} classifier ({card['backbone']})", "",
        f"alface {card['alface_version']}, exported {card['created']} from model "
        f"{m.get('id', '?')} ({m.get('checkpoint', '')}).", "",
        "## Intended use", "", card["intended_use"], "", "## Labels", "", card["labels"], "",
        "Classes, in output order: " + ", ".join(f"`{c}`" for c in card["classes"]) + ".", "",
        "## Input and output", "",
        f"- file: `{card['files']['model']}` ({card['files']['format']})",
        f"- input: {inp['layout']}; S = {inp['size']}; {inp['resize']}",
        f"- normalisation inside the graph: mean {inp['mean']}, std {inp['std']} (on 0..1 pixels)",
        f"- output: {card['output']}",
        "- face crops as `alface preprocess` cuts them: "
        + ", ".join(f"{k} {v}" for k, v in card["preprocess"].items()),
        f"- backbone `{card['backbone']}`, trained as {card['mode']}", "",
        "## Performance on held-out faces", "", card["heldout"]["note"], "",
    ]  # fmt: skip
    perf = card["heldout"]["metrics"]
    if perf is None:
        lines += ["No held-out labeled faces: no figures. Treat every share it gives as raw.", ""]
    else:
        lines += [f"Accuracy {_pct(perf['acc'])} %, macro-F1 {_pct(perf['macro_f1'])} % "
                  f"over {perf['n']} faces.", "",
                  "| class | precision % | recall % | F1 % | n |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for c, r in perf["per_class"].items():
            lines.append(f"| {c} | {_pct(r['precision'])} | {_pct(r['recall'])} | "
                         f"{_pct(r['f1'])} | {r['n']} |")  # fmt: skip
        lines.append("")
    counts = card["training_labels"]
    lines += ["## Training labels", "", "| class | labels |", "|---|---:|"]
    lines += [f"| {c} | {n} |" for c, n in counts.items()]
    lines += ["", f"{sum(counts.values())} labels in the training split when exported.", ""]
    crops = card.get("training_crops") or {}
    if crops:
        lines += ["Training crops: " + ", ".join(f"{n} {k}" for k, n in crops.items()) + ".", ""]
    if crops.get(GIVEN):
        lines += [CROP_WARNING, ""]
    lines += terms_markdown(card.get("source_terms", []))
    if card.get("forgotten"):
        lines += [FORGOTTEN_WARNING.format(n=card["forgotten"]), ""]
    if card.get("check"):
        lines += [f"Checked at export: {card['check']}", ""]
    return "\n".join(lines)
