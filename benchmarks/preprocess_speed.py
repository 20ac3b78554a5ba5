"""Images/second of `alface preprocess` against the plain per-image facenet-pytorch loop.

Makes N images (default 200 at 640x480) from real faces (scikit-image's astronaut and the
photos in ../shared/fixtures/photos when present: cropped, scaled and placed on varied
backgrounds), then times, side by side in one process and interleaved when --repeats > 1:

* plain: ``MTCNN(keep_all=True)`` called once per PIL image (open + convert + detect + extract);
* alface: ``alface preprocess WORKDIR FOLDER`` through the CLI's own ``main`` (hashing, worker
  processes, batched MTCNN, crops, JPEG files, store transactions), with the default config and
  again with ``preprocess.min_face_size=20`` (the plain loop's smallest face).

Both are timed in wall-clock images/second (the figure asked for) and in CPU milliseconds per
image (this process and the decoding workers): the second moves far less when other jobs share
the machine. Rounds are interleaved and the ratio is taken within each round.

Both sides run on ``--device`` (default ``auto``: the GPU when torch sees one, as alface's own
default): the plain loop as ``MTCNN(device=...)``, alface with ``device.torch=...``.

Usage: .venv/bin/python benchmarks/preprocess_speed.py [--n 200] [--size 640x480] [--repeats 3]
       [--device auto|cpu|cuda] [--defaults-only] [--out FIGURES.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from statistics import median

import numpy as np
from PIL import Image, ImageFilter, ImageOps

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "photos"
PLAIN = "plain MTCNN(keep_all=True) loop"
VARIANTS = {"alface (defaults)": [], "alface min_face_size=20": ["preprocess.min_face_size=20"]}


def face_sources() -> list[Image.Image]:
    """Real photos with faces: the astronaut, and the shared fixture photos when present."""
    from skimage import data

    out = [Image.fromarray(data.astronaut())]
    for p in sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []:
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        img.thumbnail((1280, 1280))
        out.append(img)
    return out


def background(rng: np.random.Generator, w: int, h: int, photo: Image.Image) -> Image.Image:
    """A solid, gradient or blurred-photo (out-of-focus scene) background."""
    kind = rng.integers(3)
    if kind == 0:
        return Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == 1:
        ramp = np.linspace(0, 1, w)[None, :, None] * rng.integers(0, 256, 3)
        a = ramp + (np.linspace(0, 1, h)[:, None, None] * rng.integers(0, 128, 3))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    pw, ph = photo.size
    x0, y0 = int(rng.integers(0, pw // 2)), int(rng.integers(0, ph // 2))
    part = photo.crop((x0, y0, x0 + pw // 2, y0 + ph // 2)).resize((w, h))
    return part.filter(ImageFilter.GaussianBlur(float(rng.uniform(4, 12))))


def make_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``n`` JPEGs of ``size``, each one real face cropped, scaled and placed differently."""
    rng = np.random.default_rng(seed)
    sources = face_sources()
    w, h = size
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        sw, sh = src.size
        keep = rng.uniform(0.7, 1.0)  # crop away up to 30 % of the picture, around its middle
        cw, ch = int(sw * keep), int(sh * keep)
        x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
        piece = src.crop((x0, y0, x0 + cw, y0 + ch))
        scale = min(w / cw, h / ch) * rng.uniform(0.55, 1.0)
        piece = piece.resize((max(1, int(cw * scale)), max(1, int(ch * scale))))
        if rng.random() < 0.5:
            piece = ImageOps.mirror(piece)
        canvas = background(rng, w, h, sources[(i + 1) % len(sources)])
        px = int(rng.integers(0, w - piece.size[0] + 1))
        py = int(rng.integers(0, h - piece.size[1] + 1))
        canvas.paste(piece, (px, py))
        paths.append(folder / f"img_{i:04d}.jpg")
        canvas.save(paths[-1], quality=90)
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the decoding workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_plain(paths: list[Path], device: str = "cpu") -> Generator[None, None, int]:
    """The plain loop; returns the faces found (prob >= 0.9). MTCNN is built before the clock."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=device)
    faces = 0
    yield  # the clock starts here
    for p in paths:
        img = Image.open(p).convert("RGB")
        crops, probs = mtcnn(img, return_prob=True)
        if crops is not None:
            faces += int((np.asarray(probs, dtype=float) >= 0.9).sum())
    return faces


def run_alface(folder: Path, root: Path, overrides: list[str]) -> Generator[None, None, int]:
    """`alface preprocess` on a fresh work directory; returns the faces added."""
    from alface.cli import main
    from alface.store import Store

    if main(["-q", "init", str(root)]) != 0:
        raise SystemExit("alface init failed")
    yield  # the clock starts here
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["-q", "preprocess", str(root), str(folder), *overrides])
    if code != 0:
        raise SystemExit(f"alface preprocess exited {code}")
    with Store.open(root) as store:
        return len(store.items.get())


def timed(gen: Generator[None, None, int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, result) of the part of ``gen`` after its first yield."""
    next(gen)
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        next(gen)
    except StopIteration as stop:
        return time.perf_counter() - wall, cpu_seconds() - cpu, stop.value
    raise RuntimeError("the timed generator yielded twice")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", default="640x480", help="WxH of the generated images")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (both sides)")
    parser.add_argument(
        "--defaults-only", action="store_true", help="skip the min_face_size=20 alface run"
    )
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    w, h = map(int, args.size.lower().split("x"))
    import torch

    from alface.device import cuda_count, torch_device

    device = str(torch_device(args.device))
    variants = {
        k: [*v, f"device.torch={device}"]
        for k, v in VARIANTS.items()
        if not v or not args.defaults_only
    }

    rates: dict[str, list[float]] = {PLAIN: [], **{k: [] for k in variants}}
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    faces: dict[str, int] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, args.n, (w, h))
        for r in range(args.repeats):
            runs = {PLAIN: run_plain(paths, device)}
            for name, overrides in variants.items():
                runs[name] = run_alface(folder, Path(tmp) / f"wd{r}-{len(runs)}", overrides)
            for name, gen in runs.items():
                wall, used, faces[name] = timed(gen)
                rates[name].append(args.n / wall)
                cpu[name].append(1000 * used / args.n)
    print(f"{args.n} images {w}x{h}; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cpus, cuda devices {cuda_count()}, device {device}; load average before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'':32s} {'images/s':>9s} {'per round':>16s} {'x plain':>8s} {'per round':>16s} "
          f"{'CPU ms/img':>10s} {'faces':>6s}")  # fmt: skip
    for name in rates:
        ratios = [a / b for a, b in zip(rates[name], rates[PLAIN], strict=True)]  # same round
        print(f"{name:32s} {median(rates[name]):9.1f} {_row(rates[name]):>16s} "
              f"{median(ratios):8.2f} {_row(ratios):>16s} {median(cpu[name]):10.0f} "
              f"{faces[name]:6d}")  # fmt: skip
    if args.out:
        figures = {"n": args.n, "size": [w, h], "device": device, "rates": rates, "cpu_ms": cpu,
                   "faces": faces}  # fmt: skip
        args.out.write_text(json.dumps(figures, indent=1))


def _row(values: list[float]) -> str:
    return " ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
