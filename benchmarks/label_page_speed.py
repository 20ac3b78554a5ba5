"""How fast the labeling page answers a click, with a real HTTP client against the running page.

Builds a work dir of N faces (default 10,000) whose history is labeled (closed batches, two
annotators on a share, a review queue), with ``--open`` faces waiting in open batches (10 %
paired), starts `alface label` on it in its own process, and clicks through faces as an
annotator does: one click = POST the answer + GET the next face (the redirect). Also times the
grid, the review view, undo, and the pictures (crop; source frame with the box, uncached).

    .venv/bin/python benchmarks/label_page_speed.py --faces 10000 --open 2000 --clicks 300
    .venv/bin/python benchmarks/label_page_speed.py --json runs/label_page_speed.json

Figures are milliseconds of wall time as the client sees them (loopback HTTP, server and client
on the same machine): median, 90th and 99th percentile, max.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from alface.config import Config
from alface.store import NewItem
from alface.workdir import Workdir

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ITEM = re.compile(r'name="item" value="(\d+)"')


def build(root: Path, n_faces: int, n_open: int, seed: int = 0) -> list[int]:
    """A work dir of ``n_faces``: all but ``n_open`` labeled in closed batches (by alice, 20 %
    also by bob, 1 in 10 of those disagreeing), ``n_open`` in open batches (10 % paired)."""
    rng = np.random.default_rng(seed)
    classes = Config().labels.classes
    wd = Workdir.init(root, Config())
    (root / "crops").mkdir()
    photo = root.parent / "photo.jpg"
    from skimage import data

    Image.fromarray(data.astronaut()).save(photo, quality=90)
    Image.fromarray(data.astronaut()[30:200, 170:300]).resize((160, 160)).save(
        root / "crops" / "face.jpg", quality=90
    )
    records = [
        NewItem("crops/face.jpg", hashlib.sha1(str(k).encode()).hexdigest(),
                source_path=str(photo), box=(170 + k % 40, 30, 300 + k % 40, 200), prob=0.99)
        for k in range(n_faces)
    ]  # fmt: skip
    with wd.store.transaction("bench"):
        ids = wd.store.items.add(records, pool=1)
    done, waiting = ids[: n_faces - n_open], ids[n_faces - n_open :]
    with wd.store.transaction("bench"):
        for start in range(0, len(done), 200):  # the loop's batches of the past, closed
            chunk = done[start : start + 200]
            paired = rng.random(len(chunk)) < 0.2
            batch = wd.store.runs.add_batch(
                "select", [{"item_id": i, "annotators": 2 if p else 1}
                           for i, p in zip(chunk, paired, strict=True)],
            )  # fmt: skip
            truth = rng.choice(classes, len(chunk))
            wd.store.labels.annotate([(i, t, "alice") for i, t in zip(chunk, truth, strict=True)])
            second = [(i, t if rng.random() > 0.1 else classes[0], "bob")
                      for i, t, p in zip(chunk, truth, paired, strict=True) if p]  # fmt: skip
            wd.store.labels.annotate(second)
            wd.store.runs.close_batch(batch)
        for start in range(0, len(waiting), 200):
            chunk = waiting[start : start + 200]
            wd.store.runs.add_batch(
                "itval" if start == 0 else "select",
                [{"item_id": i, "annotators": 2 if rng.random() < 0.1 else 1,
                  "predicted": str(rng.choice(classes))} for i in chunk],
            )  # fmt: skip
    wd.close()
    return ids


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {"n": len(a), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}  # fmt: skip


def _timed(fn) -> tuple[float, httpx.Response]:
    t = time.perf_counter()
    r = fn()
    return (time.perf_counter() - t) * 1000, r


def measure(base: str, clicks: int, classes: list[str]) -> dict[str, dict[str, float]]:
    """Click through ``clicks`` faces and the other views; times in ms per request."""
    out: dict[str, list[float]] = {k: [] for k in ("click", "label page", "undo", "grid",
                                                   "review page", "review click", "face picture",
                                                   "frame picture (uncached)")}  # fmt: skip
    with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as c:
        html = c.get("/login").text
        html = c.post("/login", data={"name": "carol", "csrf": CSRF.search(html)[1]}).text
        for k in range(clicks):
            item = ITEM.search(html)[1]
            data = {"item": item, "answer": classes[k % len(classes)], "csrf": CSRF.search(html)[1]}
            if k % 10 == 0:
                ms, _ = _timed(lambda i=item: c.get(f"/img/{i}/face"))
                out["face picture"].append(ms)
                ms, _ = _timed(lambda i=item: c.get(f"/img/{i}/frame"))
                out["frame picture (uncached)"].append(ms)
            ms, r = _timed(lambda d=data: c.post("/label", data=d))
            out["click"].append(ms)
            html = r.text
            if k % 10 == 5:
                ms, r = _timed(lambda: c.get("/label"))
                out["label page"].append(ms)
                token = CSRF.search(r.text)[1]
                ms, r = _timed(lambda t=token: c.post("/undo", data={"csrf": t}))
                out["undo"].append(ms)
                html = r.text
            if k % 25 == 0:
                ms, _ = _timed(lambda: c.get("/grid"))
                out["grid"].append(ms)
        for _ in range(min(clicks // 5, 50)):
            ms, r = _timed(lambda: c.get("/review"))
            out["review page"].append(ms)
            if not ITEM.search(r.text):
                break
            data = {"item": ITEM.search(r.text)[1], "answer": classes[0],
                    "csrf": CSRF.search(r.text)[1]}  # fmt: skip
            ms, _ = _timed(lambda d=data: c.post("/review", data=d))
            out["review click"].append(ms)
    return {k: _stats(v) for k, v in out.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10000, help="faces in the work dir")
    parser.add_argument("--open", type=int, default=2000, help="of those, in open batches")
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    classes = list(Config().labels.classes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "work"
        t = time.perf_counter()
        build(root, args.faces, args.open)
        built = time.perf_counter() - t
        port = _port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        server = subprocess.Popen(
            [sys.executable, "-m", "alface", "-q", "label", str(root), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(400):
                try:
                    httpx.get(base + "/login")
                    break
                except httpx.ConnectError:
                    time.sleep(0.05)
            figures = measure(base, args.clicks, classes)
        finally:
            server.terminate()
            server.wait()
    result = {
        "faces": args.faces, "open": args.open, "clicks": args.clicks, "cpus": os.cpu_count(),
        "build_s": round(built, 1), "ms": figures,
        "date": time.strftime("%Y-%m-%d"), "python": sys.version.split()[0],
    }  # fmt: skip
    print(f"work dir: {args.faces} faces, {args.open} in open batches (built in {built:.0f} s); "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'request':<26}{'n':>5}{'median':>9}{'p90':>8}{'p99':>8}{'max':>8}  (ms)")
    for name, s in figures.items():
        print(f"{name:<26}{s['n']:>5}{s['median']:>9.1f}{s['p90']:>8.1f}{s['p99']:>8.1f}"
              f"{s['max']:>8.1f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
