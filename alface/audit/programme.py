"""Synthetic programmes: video composited from labeled face crops, with exactly known shares.

A programme is *planned* first (:func:`plan_programme`, no pixels): people (one crop each, of
a known group, in proportions that follow the mix), their appearances (when, in which vertical
lane of the frame, how large, moving along which path; some slide in or out through the top or
bottom edge) and scenes (a background each, panned slowly, cut every few seconds). Faces do not
overlap: each appearance keeps to its lane, one at a time per lane. The face-seconds given to
each group follow the mix, so the screen time of each group is close to it; the *exact* shares
come from the rendered truth (:func:`true_shares`). :func:`write_programme` renders every
frame, writes an H.264 mp4 with PyAV and returns the truth: per frame the faces (person, label,
box of the pasted crop clipped to the frame, visible fraction).

Crops are pasted with a feathered elliptical edge over backgrounds that hold no faces
(:mod:`alface.audit.backgrounds`).
Everything is deterministic given the seed; any labeled crops serve, as (path, label) pairs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from alface.audit.backgrounds import BACKGROUNDS, background
from alface.errors import AlfaceError
from alface.fsutil import atomic_path, write_file

_ENTRY_SECONDS = 0.8  # an entering (leaving) face slides in (out) over this long


class ProgrammeError(AlfaceError, ValueError):
    """A programme that cannot be planned from the crops and settings given."""


@dataclass(frozen=True)
class ProgrammeSpec:
    """The shape of a programme; face sizes and positions scale with the frame height."""

    size: tuple[int, int] = (1280, 720)  # width, height (even)
    fps: int = 25
    duration: float = 60.0  # seconds
    people: int = 12
    on_screen: float = 2.0  # mean faces on screen
    lanes: int = 3  # vertical bands of the frame; at most one face in each at a time
    face_height: tuple[float, float] = (0.11, 0.28)  # crop height / frame height: 80-200 px at 720p
    appearance: tuple[float, float] = (2.0, 6.0)  # seconds on screen per appearance
    scene: tuple[float, float] = (4.0, 10.0)  # seconds between cuts
    enter_leave: float = (
        0.3  # probability that an appearance enters (and, apart, leaves) by an edge
    )


@dataclass(frozen=True)
class Appearance:
    """One person on screen from ``start`` to ``end`` s, the crop's longer side ``size`` px, its
    centre moving from ``p0`` to ``p1`` (px), entering/leaving by the top or bottom edge if set."""

    person: int
    lane: int
    start: float
    end: float
    size: int
    p0: tuple[float, float]
    p1: tuple[float, float]
    enter: int  # 0: appears in place; -1: slides in from above; +1: from below
    leave: int  # 0: vanishes in place; -1: slides out through the top; +1: the bottom

    def centre(self, t: float, frame_h: int) -> tuple[float, float]:
        """The crop's centre at time ``t`` (within start..end)."""
        u = (t - self.start) / max(self.end - self.start, 1e-9)
        x, y = (a + u * (b - a) for a, b in zip(self.p0, self.p1, strict=True))
        off = frame_h / 2 + self.size  # far enough for the whole crop to be out
        if self.enter and t - self.start < _ENTRY_SECONDS:
            y += self.enter * off * (1 - (t - self.start) / _ENTRY_SECONDS)
        if self.leave and self.end - t < _ENTRY_SECONDS:
            y += self.leave * off * (1 - (self.end - t) / _ENTRY_SECONDS)
        return x, y


@dataclass(frozen=True)
class Plan:
    """Everything a programme shows, before any pixel is drawn."""

    spec: ProgrammeSpec
    classes: tuple[str, ...]
    mix: tuple[float, ...]  # the target shares of screen time, per class
    people: tuple[tuple[str, int], ...]  # (crop path, class index) per person id
    appearances: tuple[Appearance, ...]
    scenes: tuple[tuple[float, str, int], ...]  # (start s, background kind, its seed)
    seed: int

    @property
    def n_frames(self) -> int:
        """Frames in the programme."""
        return int(round(self.spec.duration * self.spec.fps))


# -- mixes -------------------------------------------------------------------------------------
def parse_mix(text: str | Sequence[float], k: int) -> np.ndarray:
    """(k,) shares summing to 1 from ``"70/10/10/5/5"`` or a list of k non-negative numbers."""
    try:
        parts = [float(v) for v in (text.split("/") if isinstance(text, str) else text)]
    except ValueError:
        raise ProgrammeError(f"mix {text!r}: expected numbers like 70/10/10/5/5") from None
    if len(parts) != k or min(parts) < 0 or sum(parts) <= 0 or not all(map(math.isfinite, parts)):
        raise ProgrammeError(f"mix {text!r}: need {k} non-negative shares, not all 0")
    return np.asarray(parts) / sum(parts)


def mix_counts(mix: np.ndarray, n: int) -> np.ndarray:
    """(K,) integers summing to ``n`` proportional to ``mix`` (largest remainders, ties to the
    lower index)."""
    exact = np.asarray(mix, dtype=np.float64) * n
    out = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(out)), -(exact - out)))
    out[order[: n - int(out.sum())]] += 1
    return out


def draw_faces(labels: np.ndarray, mix: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (n,) into ``labels`` (N,) class indices: exactly ``mix_counts(mix, n)`` faces
    of each class, without replacement, shuffled."""
    need = mix_counts(mix, n)
    picks = []
    for k, m in enumerate(need):
        have = np.flatnonzero(labels == k)
        if m > len(have):
            raise ProgrammeError(f"the mix needs {m} faces of class {k}, only {len(have)} exist")
        picks.append(rng.choice(have, size=m, replace=False))
    return rng.permutation(np.concatenate(picks)).astype(np.int64)


# -- planning ----------------------------------------------------------------------------------
def plan_programme(
    items: Sequence[tuple[str | Path, str]],
    classes: Sequence[str],
    mix: str | Sequence[float],
    spec: ProgrammeSpec = ProgrammeSpec(),
    seed: int = 0,
) -> Plan:
    """A programme's plan from labeled crops ``items`` ((path, label) pairs) with screen time
    following ``mix`` (per class, e.g. ``"70/10/10/5/5"``)."""
    _check_spec(spec)
    shares = parse_mix(mix, len(classes))
    index = {c: i for i, c in enumerate(classes)}
    if bad := sorted({lab for _, lab in items if lab not in index}):
        raise ProgrammeError(f"labels {bad[:3]} are not among the classes {list(classes)}")
    rng = np.random.default_rng(seed)
    people = _pick_people(items, index, shares, spec.people, rng)
    appearances = _schedule(people, shares, spec, rng)
    scenes, t = [], 0.0
    while t < spec.duration:
        kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        scenes.append((round(t, 3), kind, int(rng.integers(2**31))))
        t += rng.uniform(*spec.scene)
    return Plan(spec, tuple(classes), tuple(shares.tolist()), people, appearances, tuple(scenes),
                seed)  # fmt: skip


def _check_spec(s: ProgrammeSpec) -> None:
    w, h = s.size
    checks = (("size", w >= 64 and h >= 64 and w % 2 == 0 and h % 2 == 0, "even, >= 64"),
              ("fps", s.fps >= 1, ">= 1"), ("duration", s.duration > 0, "> 0"),
              ("people", s.people >= 1, ">= 1"), ("lanes", s.lanes >= 1, ">= 1"),
              ("on_screen", 0 < s.on_screen <= s.lanes, "in (0, lanes]"),
              ("face_height", 0 < s.face_height[0] <= s.face_height[1] <= 0.9, "0 < lo <= hi <= 0.9"),
              ("appearance", 0 < s.appearance[0] <= s.appearance[1], "0 < lo <= hi"),
              ("scene", 0 < s.scene[0] <= s.scene[1], "0 < lo <= hi"),
              ("enter_leave", 0 <= s.enter_leave <= 1, "in [0, 1]"))  # fmt: skip
    for name, ok, allowed in checks:
        if not ok:
            raise ProgrammeError(f"programme {name}={getattr(s, name)!r}: must be {allowed}")


def _pick_people(
    items: Sequence[tuple[str | Path, str]],
    index: dict[str, int],
    shares: np.ndarray,
    n_people: int,
    rng: np.random.Generator,
) -> tuple[tuple[str, int], ...]:
    """(path, class) of each person: one per class with a share at least, the rest by the mix."""
    present = shares > 0
    if n_people < present.sum():
        raise ProgrammeError(f"{n_people} people cannot show {int(present.sum())} groups")
    counts = present + mix_counts(shares, n_people - int(present.sum()))
    labels = np.array([index[lab] for _, lab in items], dtype=np.int64)
    pos = draw_faces(labels, counts / counts.sum(), int(counts.sum()), rng)
    return tuple((str(items[i][0]), int(labels[i])) for i in pos)


def _schedule(
    people: tuple[tuple[str, int], ...], shares: np.ndarray, spec: ProgrammeSpec,
    rng: np.random.Generator,
) -> tuple[Appearance, ...]:  # fmt: skip
    """Appearances giving each class its share of ``duration * on_screen`` face-seconds,
    packed into the lanes (the earliest free lane first)."""
    lo, hi = spec.appearance
    jobs = []  # (person, seconds)
    for k, share in enumerate(shares):
        who = [i for i, (_, c) in enumerate(people) if c == k]
        left, n = share * spec.duration * spec.on_screen, 0
        while left > 1e-9 and who:
            d = min(rng.uniform(lo, hi), left)
            jobs.append((who[n % len(who)], d))
            left, n = left - d, n + 1
    free = np.zeros(spec.lanes)
    out = []
    for j in rng.permutation(len(jobs)):
        person, d = jobs[j]
        lane = int(np.argmin(free))
        start = free[lane] + rng.uniform(0.0, 0.5) * (free[lane] > 0)
        end = min(start + d, spec.duration)
        free[lane] = end
        if end - start < 0.2:
            continue
        out.append(_appearance(person, lane, start, end, spec, rng))
    return tuple(sorted(out, key=lambda a: (a.start, a.lane)))


def _appearance(
    person: int, lane: int, start: float, end: float, spec: ProgrammeSpec,
    rng: np.random.Generator,
) -> Appearance:  # fmt: skip
    w, h = spec.size
    band = w / spec.lanes
    size = int(min(rng.uniform(*spec.face_height) * h, 0.9 * band))
    half = size / 2 + 1
    xs = (lane * band + half, (lane + 1) * band - half)
    ys = (half, h - half)
    p0 = (float(rng.uniform(*xs)), float(rng.uniform(*ys)))
    p1 = (float(np.clip(p0[0] + rng.normal(0, band / 6), *xs)),
          float(np.clip(p0[1] + rng.normal(0, h / 8), *ys)))  # fmt: skip
    long_enough = end - start > 3 * _ENTRY_SECONDS
    enter = int(rng.choice([-1, 1])) if long_enough and rng.random() < spec.enter_leave else 0
    leave = int(rng.choice([-1, 1])) if long_enough and rng.random() < spec.enter_leave else 0
    start, end = round(float(start), 3), round(float(end), 3)
    return Appearance(person, lane, start, end, size, p0, p1, enter, leave)


# -- rendering ---------------------------------------------------------------------------------
def render_frames(plan: Plan) -> Iterator[tuple[int, np.ndarray, list[dict[str, Any]]]]:
    """(frame index, (H, W, 3) uint8 RGB frame, the faces in it) for every frame of ``plan``.

    A face is ``{"person", "label", "box": [x0, y0, x1, y1] (the pasted crop, clipped to the
    frame, px), "visible": fraction of the crop inside the frame}``; only faces with some part
    inside are listed.
    """
    spec, (w, h) = plan.spec, plan.spec.size
    crops = [_load_crop(path) for path, _ in plan.people]
    starts = [s for s, _, _ in plan.scenes] + [spec.duration]
    patches: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    scene, bg = -1, np.zeros((h, w, 3), np.uint8)
    for i in range(plan.n_frames):
        t = i / spec.fps
        now = int(np.searchsorted(starts, t, side="right")) - 1
        if now != scene:
            scene, (_, kind, bseed) = now, plan.scenes[now]
            bg = background(kind, bseed, w, h)
            pan = np.random.default_rng(bseed).integers(0, 2, size=4)
        u = (t - starts[scene]) / (starts[scene + 1] - starts[scene])
        frame = _pan(bg, w, h, pan, u)
        faces = []
        for j, a in enumerate(plan.appearances):
            if not a.start <= t < a.end:
                patches.pop(j, None)
                continue
            if j not in patches:
                patches[j] = _patch(crops[a.person], a.size)
            face = _paste(frame, *patches[j], a.centre(t, h))
            if face is not None:
                label = plan.classes[plan.people[a.person][1]]
                faces.append({"person": a.person, "label": label, **face})
        yield i, frame, faces


def _load_crop(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError) as e:
        raise ProgrammeError(f"{path}: not a readable image ({e})") from None


def _patch(crop: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The crop resized to longer side ``size`` (float32 (h, w, 3)) and its feathered
    elliptical alpha (h, w, 1)."""
    cw, ch = crop.size
    scale = size / max(cw, ch)
    pw, ph = max(2, round(cw * scale)), max(2, round(ch * scale))
    pixels = np.asarray(crop.resize((pw, ph), Image.Resampling.BILINEAR), dtype=np.float32)
    yy, xx = np.meshgrid(np.linspace(-1, 1, ph), np.linspace(-1, 1, pw), indexing="ij")
    edge = np.clip((1.0 - np.sqrt(xx**2 + yy**2)) / 0.18, 0.0, 1.0)
    alpha = edge * edge * (3 - 2 * edge)  # smoothstep: no hard seam for a detector to see
    return pixels, alpha[..., None].astype(np.float32)


def _paste(
    frame: np.ndarray, pixels: np.ndarray, alpha: np.ndarray, centre: tuple[float, float]
) -> dict[str, Any] | None:
    """Blend ``pixels`` centred at ``centre`` into ``frame`` in place; its box and visible
    fraction, or None when it is wholly outside."""
    ph, pw = pixels.shape[:2]
    fh, fw = frame.shape[:2]
    x0, y0 = round(centre[0] - pw / 2), round(centre[1] - ph / 2)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + pw, fw), min(y0 + ph, fh)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    src = pixels[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    region = frame[cy0:cy1, cx0:cx1]
    region[...] = (src * a + region * (1 - a) + 0.5).astype(np.uint8)
    visible = (cx1 - cx0) * (cy1 - cy0) / (pw * ph)
    return {"box": [cx0, cy0, cx1, cy1], "visible": round(visible, 4)}


def _pan(bg: np.ndarray, w: int, h: int, pan: np.ndarray, u: float) -> np.ndarray:
    """The (h, w) window of ``bg`` at fraction ``u`` of a pan between two of its corners."""
    mx, my = bg.shape[1] - w, bg.shape[0] - h
    x = round(mx * (pan[0] + u * (pan[2] - pan[0])))
    y = round(my * (pan[1] + u * (pan[3] - pan[1])))
    return np.array(bg[y : y + h, x : x + w])


# -- truth and the video file ------------------------------------------------------------------
def true_shares(
    frames: Sequence[dict[str, Any]], classes: Sequence[str], every_n: int = 1,
    min_visible: float = 0.5,
) -> dict[str, float]:  # fmt: skip
    """Each class's share of the faces in every ``every_n``-th frame (1: of screen time) that
    show at least ``min_visible`` of their crop."""
    counts = dict.fromkeys(classes, 0)
    for f in frames:
        if f["index"] % every_n == 0:
            for face in f["faces"]:
                counts[face["label"]] += face["visible"] >= min_visible
    total = sum(counts.values())
    return {c: n / total if total else 0.0 for c, n in counts.items()}


def write_programme(plan: Plan, out_path: str | Path) -> dict[str, Any]:
    """Render ``plan`` to an H.264 mp4 at ``out_path`` and its truth to the same name with
    ``.json``; returns the truth (plan, per-frame faces, exact shares)."""
    import av

    out = Path(out_path)
    (w, h), fps = plan.spec.size, plan.spec.fps
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    frames = []
    with atomic_path(out) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "18"}
        for i, img, faces in render_frames(plan):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            frames.append({"index": i, "time": round(i / fps, 4), "faces": faces})
        container.mux(stream.encode())
    truth = {
        "seed": plan.seed, "size": [w, h], "fps": fps, "n_frames": plan.n_frames,
        "classes": list(plan.classes), "mix": list(plan.mix),
        "people": [{"id": i, "label": plan.classes[c], "source": p}
                   for i, (p, c) in enumerate(plan.people)],
        "appearances": [asdict(a) | {"p0": list(a.p0), "p1": list(a.p1)} for a in plan.appearances],
        "scenes": [{"start": s, "background": k} for s, k, _ in plan.scenes],
        "shares": {"screen_time": true_shares(frames, plan.classes),
                   "faces_per_second": true_shares(frames, plan.classes, every_n=fps),
                   "min_visible": 0.5},
        "frames": frames,
    }  # fmt: skip
    js = out.with_suffix(".json")
    write_file(js, json.dumps(truth))
    return truth
