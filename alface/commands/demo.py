"""`alface demo`: a small, complete, real run of the loop on scikit-learn's digits (not faces),
then `alface predict` on faces and on digits.

It runs the same commands a user runs, and prints each one: init, preprocess --cropped (two
pools), loop --oracle (two rounds), status, a small benchmark (AL vs random curves), then:

- `alface predict --detect-only` on the bundled photos (examples/photos, CC BY 4.0) and on a
  short video made of them: the faces found, their crops, screen time, a timeline. Detection
  only, on purpose: the demo's model knows digits, and no labeled faces ship with alface, so
  any "group" it gave a face would be meaningless. A face model comes from labeling faces.
- the audit where the model's classes fit the data: `alface predict --cropped` on 400 digits
  the loop never saw, in a skewed mix whose true shares are known, with a random sample
  labeled by the simulated annotator (--sample, then --gold): raw count, the corrected
  estimate and PPI side by side with the truth. Then `alface export` (model + card).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import shutil
import time
from pathlib import Path

HELP = "a small complete run of the loop on data shipped with scikit-learn (digits, not faces)"
AUDIT_MIX = {"1": 0.4}  # the held-out digits audited: 40 % ones, the rest shared evenly
AUDIT_SIZE, SAMPLE = 400, 100
DEMO_CONFIG = "configs/experiment/demo.yaml"


DIGITS_TERMS = (
    "scikit-learn's copy of the UCI Optical Recognition of Handwritten Digits data set (CC BY 4.0)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="where everything goes (default: runs/demo); emptied first")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=2, help="benchmark seeds (default: 2)")
    parser.epilog = (
        "The data are scikit-learn's 1,797 handwritten digits, NOT faces: they ship inside a "
        "dependency, so the demo runs anywhere, offline, in a few minutes on 2 CPU cores. A "
        "simulated annotator (the oracle) answers the labeling requests. Then `alface predict` "
        "finds the faces in the bundled photos and a video made of them (detection only: a "
        "digits model cannot tell anything about faces, and no labeled faces ship with alface), "
        "and audits 400 held-out digits of known mix (raw, corrected and PPI vs the truth)."
    )


def run(args: argparse.Namespace) -> int:
    from alface.config import CONFIG_ROOT
    from alface.datasets import digits_folder

    out = Path(args.out).absolute()
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    print(f"alface demo: the active-learning loop on scikit-learn's digits (not faces) -> {out}")
    data = digits_folder(out / "data")
    oracle = out / "data" / "oracle.csv"
    audit_dir, truth, held = _audit_set(data, out / "data" / "audit")
    pools = _pools(data, out / "data", oracle, exclude=held)
    work, config = out / "work", str(Path(CONFIG_ROOT) / "experiment" / "demo.yaml")
    _step(["init", str(work), "--config", config])
    terms = ["--source-terms", DIGITS_TERMS]
    _step(["preprocess", str(work), str(pools[0]), "--cropped", *terms], ok=(0,))
    _step(["loop", str(work), "--oracle", str(oracle)])
    print("\n# a new unlabeled pool arrives: round 2")
    _step(["preprocess", str(work), str(pools[1]), "--cropped", *terms], ok=(0,))
    _step(["loop", str(work), "--oracle", str(oracle)])
    _step(["status", str(work)])
    bench = out / "benchmark"
    _step(["benchmark", "--config", config, "--seeds", str(args.seeds), "--out", str(bench)])
    faces = _faces(out)
    digits = _digit_audit(work, audit_dir, truth, out / "digits-audit")
    _step(["export", str(work), "--out", str(out / "export")])
    print(f"\nalface demo: done in {time.time() - start:.0f} s. Where the files went:")
    print(f"  {work}/batches/        the label batches (batch.csv, tasks.json, sheet.png)")
    print(f"  {work}/reports/        a report per iteration (report.json, report.png)")
    print(f"  {work}/models/         the checkpoints; {work}/alface.db the store")
    for png in sorted(bench.glob("*.png")):
        print(f"  {png}   learning curves: AL vs random")
    print(f"  {faces}/summary.md   faces found in the example photos and video (crops/, plots/)")
    print(f"  {digits}/summary.md   the audit of held-out digits: raw, corrected, PPI")
    print(f"  {out / 'export'}/model_card.md   the exported model and its card")
    return 0


def _faces(out: Path) -> Path:
    """Detection only on the example photos and a video made of them."""
    from alface.config import CONFIG_ROOT

    photos = Path(CONFIG_ROOT).parent / "examples" / "photos"
    print("\n# faces: the bundled photos and a 15 s video made of them. Detection only: the "
          "demo's model knows digits, not faces (see `alface demo --help`)")  # fmt: skip
    video = slideshow(sorted(photos.glob("*.jpg")), out / "data" / "photos.mp4")
    target = out / "faces-audit"
    _step(["predict", str(photos), str(video), "--detect-only", "--save-crops", "--out",
           str(target)])  # fmt: skip
    return target


def _digit_audit(work: Path, audit_dir: Path, truth: dict[str, str], target: Path) -> Path:
    """predict --cropped on the held-out skewed digits, a labeled random sample, --gold."""
    print(f"\n# the audit where the model's classes fit: {AUDIT_SIZE} digits the loop never saw, "
          "40 % of them ones; a simulated annotator labels a random sample")  # fmt: skip
    base = ["predict", str(work), str(audit_dir), "--cropped", "--out", str(target)]
    _step([*base, "--sample", str(SAMPLE)])
    gold = target / "sample" / "labeled.csv"
    with (target / "faces.csv").open(newline="") as f:
        source = {r["face"]: r["source"] for r in csv.DictReader(f)}
    with (target / "sample" / "batch.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["label"], r["annotator"] = truth[source[r["item"]]], "oracle"
    with gold.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _step([*base, "--gold", str(gold)])
    _compare(target / "summary.json", truth)
    return target


def _compare(summary_json: Path, truth: dict[str, str]) -> None:
    """Print each estimate's share of ones and mean absolute error against the truth."""
    import json

    a = json.loads(summary_json.read_text())["overall"]["faces"]
    classes = a["classes"]
    true = {c: sum(v == c for v in truth.values()) / len(truth) for c in classes}
    print(f"\ntruth: {100 * true['1']:.1f} % ones. Estimates (share of ones; mean absolute error "
          "over the 10 digits, points):")  # fmt: skip
    for name in ("raw", "pacc", "ppi", "classical"):
        s = a["estimates"][name]["shares"]
        mae = 100 * sum(abs(s[c]["share"] - true[c]) for c in classes) / len(classes)
        lead = " (leads)" if name == a["lead"] else ""
        print(f"  {name:9s}{lead:8s} {100 * s['1']['share']:5.1f} % [{100 * s['1']['low']:.1f}-"
              f"{100 * s['1']['high']:.1f}]   MAE {mae:.1f}")  # fmt: skip


def _audit_set(data, folder: Path) -> tuple[Path, dict[str, str], set[str]]:  # noqa: ANN001
    """AUDIT_SIZE digits in the AUDIT_MIX: copies in ``folder``, {copy's path: label}, and the
    originals' paths (kept out of the pools)."""
    import numpy as np

    from alface.audit.programme import draw_faces

    classes = sorted(set(data.labels.tolist()))
    rest = (1 - sum(AUDIT_MIX.values())) / (len(classes) - len(AUDIT_MIX))
    mix = np.array([AUDIT_MIX.get(c, rest) for c in classes])
    labels = np.array([classes.index(v) for v in data.labels.tolist()])
    picked = draw_faces(labels, mix, AUDIT_SIZE, np.random.default_rng(0))
    folder.mkdir(parents=True, exist_ok=True)
    truth, held = {}, set()
    for i in picked:
        dst = folder / Path(data.paths[i]).name
        shutil.copyfile(data.paths[i], dst)
        truth[str(dst.resolve())] = classes[labels[i]]
        held.add(str(Path(data.paths[i]).resolve()))
    return folder, truth, held


def slideshow(photos: list[Path], path: Path, seconds_each: float = 3.0, fps: int = 25) -> Path:
    """An H.264 (or MPEG-4) mp4, 640x360, showing each photo in turn, letterboxed."""
    from fractions import Fraction

    import av
    import numpy as np
    from PIL import Image

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for p in photos:
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((640, 360))
                canvas = Image.new("RGB", (640, 360))
                canvas.paste(im, ((640 - im.width) // 2, (360 - im.height) // 2))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            for _ in range(round(seconds_each * fps)):
                out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _pools(data, folder: Path, oracle: Path, exclude: set[str]) -> list[Path]:  # noqa: ANN001
    """Two pools (folders of copies: the first half, the second half of the digits not in
    ``exclude``) and an oracle CSV."""
    keep = [(p, lab) for p, lab in zip(data.paths, data.labels, strict=True)
            if str(Path(p).resolve()) not in exclude]  # fmt: skip
    half = len(keep) // 2
    pools, rows = [folder / "pool1", folder / "pool2"], []
    for k, (path, label) in enumerate(keep):
        dst = pools[k >= half] / Path(path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst)
        rows.append((str(dst.resolve()), str(label)))
    with oracle.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return pools


def _step(argv: list[str], ok: tuple[int, ...] = (0,)) -> None:
    """Run one alface command as a user would, echoing it first."""
    from alface.cli import main
    from alface.errors import AlfaceError

    print(f"\n$ {shlex.join(['alface', *argv])}", flush=True)  # as a shell takes it
    code = main(argv)
    if code not in ok:
        raise AlfaceError(f"demo step `alface {argv[0]}` failed with exit code {code}")
