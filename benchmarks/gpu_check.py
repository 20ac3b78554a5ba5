"""One GPU check: the GPU tests and every GPU figure, written as one JSON and one markdown table
(machine, versions, date, and each figure with the command that measured it).

    benchmarks/gpu_check.sh                  # = make gpu-check: full sizes when torch sees a GPU
    benchmarks/gpu_check.sh --mode cpu       # the same steps at small sizes on the CPU (< 3 min)
    benchmarks/gpu_check.sh --out DIR --data CROPS --budget 470

Each step runs an existing benchmark script (or pytest) in a subprocess with a timeout cut to
what is left of ``--budget`` seconds, and reads its figures from the JSON that script writes.
A step the machine cannot run says why ("skipped: no GPU"); a failed step says how, and the
check exits 1 after writing everything else. Train, score and DDP read UTKFace-named crops:
``--data``, else ../shared/data/utkface-dev, else crops made here from real photos.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
UTK = (REPO.parent / "shared" / "data" / "utkface-dev", REPO / "shared" / "data" / "utkface-dev")
NO_GPU = "skipped: no GPU"


@dataclass
class Step:
    """One figure (or the GPU tests): the command, how to read it, and its goal."""

    key: str
    title: str
    argv: list[str]  # after the Python interpreter
    goal: str = ""
    timeout: float = 120
    skip: str = ""  # why it cannot run here ('' when it can)
    result: dict[str, Any] = field(default_factory=dict)


# The arguments that differ between the full run on a GPU and the small one on the CPU.
SIZES = {
    "gpu": {
        "select_1m": ["--n", "1000000", "--repeats", "3"],
        "select_10m": ["--n", "10000000", "--repeats", "2"],
        "train": ["--backbone", "resnet18", "--size", "224", "--n", "2925", "--batch-size", "256",
                  "--repeats", "3"],
        "score": ["--backbone", "resnet18", "--size", "224", "--n", "2925", "--batch-size", "512",
                  "--repeats", "3"],
        "preprocess": ["--n", "200", "--size", "640x480", "--repeats", "2"],
    },
    "cpu": {
        "select_1m": ["--n", "20000", "--repeats", "1"],
        "select_10m": ["--n", "100000", "--repeats", "1"],
        "train": ["--backbone", "test_resnet", "--size", "32", "--n", "64", "--batch-size", "16",
                  "--repeats", "1"],
        "score": ["--backbone", "test_resnet", "--size", "32", "--n", "64", "--batch-size", "16",
                  "--repeats", "1"],
        "preprocess": ["--n", "4", "--size", "320x240", "--repeats", "1", "--defaults-only"],
    },
}  # fmt: skip


def plan(mode: str, data: Path, tmp: Path, gpus: int) -> list[Step]:
    """The steps of ``mode`` ('gpu': full sizes on cuda; 'cpu': small sizes on the CPU), in
    the order they run (the most wanted figures first, should the budget run out)."""
    size, dev = SIZES[mode], ["--device", "cuda" if mode == "gpu" else "cpu"]
    tests = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text())  # fmt: skip
    ddp = max(gpus, 2)

    def script(key: str, name: str, *extra: str) -> list[str]:
        out = ["--out" if name == "preprocess_speed" else "--json", str(tmp / f"{key}.json")]
        return [str(BENCH / f"{name}.py"), *size.get(key, []), *extra, *out]

    steps = [
        Step("gpu_tests", "GPU tests (`pytest -m gpu`)",
             ["-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *tests],
             "all pass", 180),
        Step("select_1m", "selection, N = 1M", script("select_1m", "select_speed", *dev,
             "--pipelines", "alface"), "< 1 s on one GPU", 120),
        Step("train", "training epoch vs plain PyTorch", script("train", "train_speed", *dev,
             "--data", str(data)), "within 5 % of plain PyTorch", 180),
        Step("score", "pool scoring vs plain PyTorch", script("score", "score_speed", *dev,
             "--data", str(data)), "within 5 % of plain PyTorch", 150),
        Step("preprocess", "preprocessing: batched MTCNN vs the plain loop",
             script("preprocess", "preprocess_speed", *dev), ">= 100 images/s at 640x480", 150),
        Step("select_10m", "selection, N = 10M", script("select_10m", "select_speed", *dev,
             "--pipelines", "alface"), "< 10 s on one GPU", 240),
        Step("ddp", f"DDP on {ddp} GPUs vs one: scoring bytes, train and select times",
             script("ddp", "ddp_speed", "--devices", str(ddp), "--data", str(data)),
             "the same score bytes", 240),
    ]  # fmt: skip
    if mode == "cpu":
        steps[-1].skip = NO_GPU
    elif gpus < 2:
        steps[-1].skip = f"skipped: {gpus} GPU visible, DDP needs 2"
    return steps


def read_figures(step: Step, tmp: Path, stdout: str, gpu: bool) -> dict[str, Any]:
    """The figures of a finished step, from the JSON its script wrote (pytest: its summary)."""
    if step.key == "gpu_tests":
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", stdout)}
        skips = re.findall(r"SKIPPED \[\d+\] ([^\n]+)", stdout)
        out = {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "error")}
        return out | {"skip_reasons": skips, "met": gpu and out["passed"] > 0 and not skips}
    raw = json.loads((tmp / f"{step.key}.json").read_text())
    if step.key.startswith("select"):
        (r,) = raw["results"]
        best = min(r["times"])
        limit = 1.0 if step.key == "select_1m" else 10.0
        return {"n": raw["args"]["n"], "best_s": round(best, 3),
                "median_s": round(median(r["times"]), 3), "device": r.get("device"),
                "faiss_gpus": r.get("faiss_gpus"), "stages_s": r.get("stages"),
                "met": gpu and best < limit}  # fmt: skip
    if step.key in ("train", "score"):
        runs = [r["overhead_pct_img_s"] for r in raw["runs"]]
        over = raw["overhead_pct_best_vs_best_img_s"]
        return {"plain_img_s": raw["best_plain_img_s"], "alface_img_s": raw["best_alface_img_s"],
                "overhead_pct_best": over, "overhead_pct_median_run": median(runs),
                "precision": raw["precision"], "plain_channels_last": raw["plain_channels_last"],
                "images": raw["images"], "met": gpu and over <= 5.0}  # fmt: skip
    if step.key == "preprocess":
        rates = {k: round(median(v), 1) for k, v in raw["rates"].items()}
        plain, ours = rates.pop(next(iter(raw["rates"]))), rates["alface (defaults)"]
        return {"plain_img_s": plain, **{f"{k} img_s": v for k, v in rates.items()},
                "x_plain": round(ours / plain, 2), "device": raw["device"],
                "met": gpu and tuple(raw["size"]) == (640, 480) and ours >= 100}  # fmt: skip
    return raw | {"met": bool(raw["scores_identical"])}  # ddp


def summary(step: Step) -> str:
    """The figure cell of the markdown table."""
    f = step.result.get("figures")
    if not f:
        return step.result["status"]
    if step.key == "gpu_tests":
        return f"{f['passed']} passed, {f['skipped']} skipped, {f['failed'] + f['error']} failed"
    if step.key.startswith("select"):
        faiss = f"{f['faiss_gpus']} GPU(s)" if f["faiss_gpus"] else "the CPU"
        return (f"N = {f['n']:,}: best {f['best_s']} s, median {f['median_s']} s "
                f"(torch on {f['device']}, FAISS k-means on {faiss})")  # fmt: skip
    if step.key in ("train", "score"):
        return (f"alface {f['alface_img_s']} vs plain {f['plain_img_s']} img/s: "
                f"{f['overhead_pct_best']:+.1f} % (best vs best; median run "
                f"{f['overhead_pct_median_run']:+.1f} %), {f['precision']}")  # fmt: skip
    if step.key == "preprocess":
        return (f"alface {f['alface (defaults) img_s']} vs plain {f['plain_img_s']} images/s "
                f"({f['x_plain']}x) on {f['device']}")  # fmt: skip
    return (f"scores identical: {f['scores_identical']}; train {f['train_s_1']} s (1) vs "
            f"{f['train_s_N']} s ({f['devices']}); select {f['select_s_1']} s vs "
            f"{f['select_s_N']} s")  # fmt: skip


def run_step(step: Step, tmp: Path, left: float, log, gpu: bool) -> None:
    """Run ``step`` (timeout: what is left of the budget) and fill ``step.result``."""
    cmd = [sys.executable, *step.argv]
    shown = shlex.join(["python", *step.argv]).replace(str(REPO) + "/", "")
    step.result = {"command": shown.replace(str(tmp), "$TMP")}
    if step.skip or left < 10:
        step.result["status"] = step.skip or "skipped: time budget spent"
        return
    start = time.perf_counter()
    log.write(f"\n=== {step.key}: {shlex.join(cmd)}\n")
    log.flush()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                           timeout=min(step.timeout, left))  # fmt: skip
        log.write(r.stdout + r.stderr)
        if r.returncode:
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or [""]
            step.result["status"] = f"failed: exit {r.returncode}: {tail[0][:300]}"
        else:
            step.result["figures"] = read_figures(step, tmp, r.stdout, gpu)
            step.result["status"] = "ok"
    except subprocess.TimeoutExpired:
        step.result["status"] = f"failed: timed out after {min(step.timeout, left):.0f} s"
    except (OSError, KeyError, ValueError) as e:
        step.result["status"] = f"failed: could not read its figures: {type(e).__name__}: {e}"
    step.result["seconds"] = round(time.perf_counter() - start, 1)


def environment() -> dict[str, Any]:
    """Machine, versions and date of this run."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    try:
        import faiss

        fa = {"faiss": faiss.__version__, "faiss_gpus": faiss.get_num_gpus()}
    except ImportError as e:
        fa = {"faiss": f"not importable: {e}", "faiss_gpus": 0}
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = [torch.cuda.get_device_properties(i) for i in range(n)]
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.split("\n")[0].strip() or None  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        driver = None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cpu_cores": os.cpu_count(), "memory_gib": round(int(mem.group(1)) / 2**20) if mem else None,
        "gpus": [f"{g.name} ({g.total_memory / 2**30:.0f} GiB)" for g in gpus], "driver": driver,
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if n else None,
        "lightning": pkg("lightning"), "timm": pkg("timm"), **fa,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def make_crops(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct 200x200 JPEG crops of real photos (preprocess_speed's face sources),
    named as UTKFace names its crops (AGE_GENDER_RACE_i, races 0-4 in turn): the data of the
    train, score and DDP steps on machines without ../shared."""
    from PIL import ImageEnhance, ImageOps
    from preprocess_speed import face_sources

    rng, sources = np.random.default_rng(seed), face_sources()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        side = int(min(src.size) * rng.uniform(0.4, 0.9))
        x, y = (int(rng.integers(0, s - side + 1)) for s in src.size)
        img = src.crop((x, y, x + side, y + side)).resize((200, 200))
        img = ImageOps.mirror(img) if rng.random() < 0.5 else img
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
        img.save(folder / f"{20 + i % 60}_{i % 2}_{i % 5}_{i:05d}.jpg.chip.jpg", quality=90)
    return folder


def markdown(env: dict[str, Any], steps: list[Step], meta: dict[str, Any]) -> str:
    """The report as a markdown table (one row per step)."""
    gpus = ", ".join(env["gpus"]) or "no GPU"
    lines = [
        f"# GPU check ({meta['mode']} mode), {env['date']}", "",
        f"Machine: {gpus}, driver {env['driver'] or '-'}; {env['cpu']}, {env['cpu_cores']} "
        f"cores, {env['memory_gib']} GiB RAM. Python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['torch_cuda'] or '-'}, cuDNN {env['cudnn'] or '-'}), lightning "
        f"{env['lightning']}, timm {env['timm']}, faiss {env['faiss']} "
        f"({env['faiss_gpus']} GPU(s)). Data: {meta['data']}. Command: `{meta['command']}` "
        f"({meta['seconds']:.0f} s).", "",
        "| step | figure | goal | met | status | s | command |",
        "|---|---|---|---|---|---:|---|",
    ]  # fmt: skip
    for s in steps:
        r, f = s.result, s.result.get("figures", {})
        met = ("yes" if f["met"] else "no") if f and meta["mode"] == "gpu" else "-"
        lines.append(f"| {s.title} | {summary(s)} | {s.goal} | {met} | {r['status']} | "
                     f"{r.get('seconds', '-')} | `{r['command']}` |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("auto", "gpu", "cpu"), default="auto",
                   help="gpu: full sizes on cuda; cpu: small sizes; auto: gpu if torch sees one")  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu-check")
    p.add_argument("--data", type=Path, help="UTKFace-named crops (default: ../shared, or made)")
    p.add_argument("--budget", type=float, help="seconds for all steps (gpu 450, cpu 170)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    env = environment()
    gpus = len(env["gpus"])
    mode = args.mode if args.mode != "auto" else "gpu" if gpus else "cpu"
    if mode == "gpu" and not gpus:
        sys.exit("gpu_check: --mode gpu but torch sees no CUDA device")
    budget = args.budget or (450 if mode == "gpu" else 170)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name, open(args.out / "gpu_check.log", "w") as log:
        tmp = Path(tmp_name)
        data = args.data or next((d for d in UTK if d.is_dir()), None)
        label = str(data) if data else "crops of real photos made by gpu_check.make_crops"
        data = data or make_crops(tmp / "crops", 2925 if mode == "gpu" else 64)
        steps = plan(mode, data, tmp, gpus)
        for step in steps:
            left = budget - (time.perf_counter() - start)
            run_step(step, tmp, left, log, mode == "gpu")
            print(f"{step.key}: {step.result['status']}", file=sys.stderr)
    meta = {"mode": mode, "data": label, "seconds": time.perf_counter() - start,
            "command": shlex.join(["benchmarks/gpu_check.sh", *(argv or sys.argv[1:])])}  # fmt: skip
    report = {**meta, "environment": env, "steps": {s.key: {"title": s.title, "goal": s.goal,
              **s.result} for s in steps}}  # fmt: skip
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(env, steps, meta))
    print(args.out / "gpu_check.md")
    return 1 if any(s.result["status"].startswith("failed") for s in steps) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))  # preprocess_speed, for make_crops
    sys.exit(main())
