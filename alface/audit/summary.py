"""summary.json and summary.md of a predict run: what was scanned, with which model and held-out
faces, and the audit (overall and per source) with each estimate, its interval and the notes.

:func:`summary_markdown` reads only the plain dict, so the markdown can be rebuilt from the
JSON alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alface.audit.quantify import UNCERTAIN

METHOD_NAMES = {"raw": "raw count", "acc": "ACC", "pacc": "PACC", "ppi": "PPI",
                "classical": "gold sample only"}  # fmt: skip


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _ci(s: Mapping[str, float]) -> str:
    return f"{_pct(s['share'])} [{_pct(s['low'])}–{_pct(s['high'])}]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def audit_table(audit: Mapping[str, Any], counts: Mapping[str, int] | None, unit: str) -> list[str]:
    """Markdown rows: per group, the raw count, then every estimate (% with 95 % interval);
    the lead's column first and marked."""
    ests = audit["estimates"]
    order = [audit["lead"], *(m for m in ("pacc", "raw", "ppi", "classical", "acc")
                              if m in ests and m != audit["lead"])]  # fmt: skip
    head = ["group", f"raw {unit}"] + [
        f"**{METHOD_NAMES[m]}** (leads)" if m == audit["lead"] else METHOD_NAMES[m] for m in order
    ]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for c in audit["classes"]:
        n = "" if counts is None else f"{counts.get(c, 0):,}"
        cells = [_ci(ests[m]["shares"][c]) for m in order]
        rows.append(f"| {c} | {n} | " + " | ".join(cells) + " |")
    n = "" if counts is None else f"{counts.get(UNCERTAIN, 0):,}"
    unc = ests["raw"]["info"]["uncertain"]
    rows.append(f"| {UNCERTAIN} | {n} | {_pct(unc)} (raw) |" + " |" * (len(order) - 1))
    return rows


def _set_section(s: Mapping[str, Any], title: str) -> list[str]:
    out = [f"## {title}", ""]
    if set(s["raw_counts"]) == {"face"}:  # detection only
        time = (f"; {_duration(s['screen_seconds'])} of face-seconds on screen"
                if s["screen_seconds"] else "")  # fmt: skip
        return out + [f"{s['n_faces']:,} face(s) found{time} (detection only: no classes).", ""]
    if s["faces"] is None and s["screen_time"] is None:
        counts = ", ".join(f"{k} {v}" for k, v in s["raw_counts"].items())
        return out + [f"{s['n_faces']} face(s): too few for an audit; raw counts: {counts}.", ""]
    for key, what, unit in (("faces", "Faces", "faces"), ("screen_time", "Screen time", "faces")):
        a = s[key]
        if a is None:
            continue
        extra = (f", {_duration(s['screen_seconds'])} of face-seconds" if key == "screen_time"
                 else "")  # fmt: skip
        out += [f"### {what} ({a['n_faces']:,} faces{extra}): share per group, % [95 % interval]",
                "", *audit_table(a, s["raw_counts"] if key == "faces" else None, unit), ""]  # fmt: skip
        out += [f"- {note}" for note in a["notes"]] + [""]
    return out


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """summary.md: the audit for people (from the summary dict)."""
    inp, model, held = summary["inputs"], summary["model"], summary["heldout"]
    detect_only = not model["classes"]
    lines = ["# Faces found (detection only)" if detect_only else "# Representation audit", ""]
    if detect_only:
        lines += ["No classifier: faces and their screen time only. For the share of each group, "
                  "run with a model trained on labeled faces (`--model`, or a work dir).", ""]  # fmt: skip
    else:
        lines += [f"Model: {model['source']} ({model['backbone']}, classes: "
                  f"{', '.join(model['classes'])}). Labels are *perceived* group.", ""]  # fmt: skip
    lines += [
        f"Inputs: {inp['images']} image(s), {inp['videos']} video(s) "
        f"({_duration(sum(summary['durations'].values()) or None)} of video, one frame every "
        f"{summary['settings']['every_seconds']:g} s), {inp['failed']} failed, "
        f"{inp['duplicates']} duplicate(s) skipped; {inp['faces']:,} face(s).", "",
    ]  # fmt: skip
    if not detect_only:
        lines += [f"Held-out labeled faces for the correction: {held['note']}", ""]
    if summary.get("gold"):
        g = summary["gold"]
        lines += [f"Gold sample: {g['n']} faces labeled by people, drawn at random from the "
                  f"{g['drawn_from']:,} faces ({g['blank']} left blank: not usable faces).", ""]  # fmt: skip
    lines += [] if detect_only else [
        "How to read it: *raw* counts each face as its most probable group (faces under "
        f"{summary['settings']['threshold']:g} probability are *uncertain*); it is biased "
        "whenever the model errs. *PACC* corrects it with the model's error rates on held-out "
        "faces; *PPI* combines the predictions with the gold sample and holds whatever the "
        "model's errors. The note under each table says which leads and why. Faces: each "
        "detection counts once (a person on screen for 10 s counts 10 times at one frame per "
        "second); screen time: each video face counts the seconds it stands for.", "",
    ]  # fmt: skip
    lines += _set_section(summary["overall"], "All inputs")
    audited = [s for s in summary["sources"] if s["faces"] is not None]
    if len(summary["sources"]) > 1:
        lines += ["## Per source", "", "| source | kind | faces | screen time | shares % |",
                  "|---|---|---:|---:|---|"]  # fmt: skip
        for s in summary["sources"]:
            a = s["screen_time"] or s["faces"]
            shares = "" if detect_only else "raw counts: " + ", ".join(
                f"{k} {v}" for k, v in s["raw_counts"].items())  # fmt: skip
            if a is not None:
                e = a["estimates"][a["lead"]]["shares"]
                shares = f"{METHOD_NAMES[a['lead']]}: " + ", ".join(
                    f"{c} {_pct(v['share'])}" for c, v in e.items())  # fmt: skip
            lines.append(f"| {s['source']} | {s['kind']} | {s['n_faces']} | "
                         f"{_duration(s['screen_seconds'])} | {shares} |")  # fmt: skip
        lines.append("")
        for s in audited:
            lines += _set_section(s, f"Source: {s['source']}")
    if inp["problems"]:
        lines += ["## Inputs not (fully) used", ""]
        lines += [f"- {p['path']}: {p['reason']} ({p['detail']})" for p in inp["problems"]]
        lines.append("")
    lines += ["## Files", ""] + [f"- `{v}`: {k}" for k, v in summary["files"].items()] + [""]
    return "\n".join(lines)
