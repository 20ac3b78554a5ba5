"""DDP against one process, through the real commands: `alface select` writes the same score
bytes with N processes as with one, and the wall time of `alface train` and `alface select`
with 1 and with N processes.

    .venv/bin/python benchmarks/ddp_speed.py --devices 2                     # N GPUs (NCCL)
    .venv/bin/python benchmarks/ddp_speed.py --accelerator cpu --devices 2 \\
        --labeled 24 --pool 16 --backbone test_resnet --size 32              # gloo, on a CPU

The work dir holds ``--labeled`` crops of ``--data`` (UTKFace-named, labeled by race) and
``--pool`` unlabeled ones; model 1 is trained first by one process. Then, each on its own copy
of that work dir: `alface train` with 1 and with N processes, and `alface select` with 1 and
with N (scoring one face per batch, so that every face's forward pass is the same in both runs;
one thread per process on a CPU). Times are whole commands (process start and imports too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UTK = REPO.parent / "shared" / "data" / "utkface-dev"


def build(root: Path, data: Path, labeled: int, pool: int, overrides: list[str]) -> None:
    """A work dir with ``labeled`` labeled and ``pool`` unlabeled distinct crops of ``data``."""
    from alface.config import Config
    from alface.store import NewItem
    from alface.workdir import Workdir

    by_hash = {hashlib.sha1(f.read_bytes()).hexdigest(): f for f in sorted(data.glob("*.jpg"))}
    if len(by_hash) < labeled + pool:
        raise SystemExit(f"{data} has {len(by_hash)} distinct crops, {labeled + pool} needed")
    records = [NewItem(str(f), h) for h, f in list(by_hash.items())[: labeled + pool]]
    wd = Workdir.init(root, Config().replace(*overrides))
    classes = wd.cfg.labels.classes
    with wd.store.transaction("bench"):
        ids = wd.store.items.add(records, pool=1)
        races = [int(Path(r.crop_path).name.split("_")[2]) for r in records[:labeled]]
        wd.store.labels.annotate(
            [(i, classes[k], "bench") for i, k in zip(ids, races, strict=False)]
        )
    wd.close()


def alface(*args: str, threads: int = 0) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr) of ``python -m alface -v ARGS``; exits on failure."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("LOCAL_RANK", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "alface", "-v", *args], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    if r.returncode:
        raise SystemExit(f"alface {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return time.perf_counter() - start, r.stdout, r.stderr


def ranks_seen(stderr: str) -> int:
    """How many distinct ranks Lightning announced (``MEMBER: k/N``); 1 without DDP."""
    return len(set(re.findall(r"MEMBER: (\d+)/\d+", stderr))) or 1


def scores_folder(root: Path) -> Path:
    """The one scores folder of a work dir after one `alface select`."""
    (folder,) = [p for p in (root / "scores").iterdir() if p.is_dir()]
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2, help="processes (GPUs) of the DDP runs")
    p.add_argument("--accelerator", default="gpu", help="gpu (NCCL) | cpu (gloo)")
    p.add_argument("--data", type=Path, default=UTK, help="folder of UTKFace-named crops")
    p.add_argument("--labeled", type=int, default=512)
    p.add_argument("--pool", type=int, default=256)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()
    from alface.scoring import FILES

    threads = 1 if args.accelerator == "cpu" else 0  # bit-exact CPU sums (tests/test_ddp.py)
    one = [f"train.trainer.accelerator={args.accelerator}", "train.trainer.devices=1"]
    ddp = [f"train.trainer.accelerator={args.accelerator}",
           f"train.trainer.devices={args.devices}", "train.trainer.strategy=ddp"]  # fmt: skip
    select = ["select.score_batch_size=1"]
    out: dict = {"devices": args.devices, "accelerator": args.accelerator,
                 "labeled": args.labeled, "pool": args.pool, "backbone": args.backbone,
                 "size": args.size}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        build(base, args.data, args.labeled, args.pool, [
            f"backbone={args.backbone}", "backbone.pretrained=false",
            f"data.image_size={args.size}", "data.cache=false",
            f"train.max_epochs={args.epochs}", f"train.min_epochs={args.epochs}",
        ])  # fmt: skip
        out["first_train_s"] = round(alface("train", str(base), *one, threads=threads)[0], 2)
        for name, extra in (("1", one), ("N", ddp)):
            root = Path(shutil.copytree(base, Path(tmp) / f"train{name}"))
            secs, stdout, stderr = alface("train", str(root), *extra, threads=threads)
            out[f"train_s_{name}"], out[f"train_ranks_{name}"] = round(secs, 2), ranks_seen(stderr)
            printed = [line for line in stdout.splitlines() if line.startswith("model ")]
            out[f"train_one_record_{name}"] = (
                len(printed) == 1 and (root / "models" / "2" / "model.ckpt").is_file()
            )
        for name, extra in (("1", one), ("N", ddp)):
            root = Path(shutil.copytree(base, Path(tmp) / f"select{name}"))
            args_ = ("select", str(root), *select, *extra, "--out", str(root / "batch"))
            secs, _, stderr = alface(*args_, "--size", "5", threads=threads)
            out[f"select_s_{name}"], out[f"select_ranks_{name}"] = (
                round(secs, 2),
                ranks_seen(stderr),
            )
        a, b = scores_folder(Path(tmp) / "select1"), scores_folder(Path(tmp) / "selectN")
        out["scores_identical"] = a.name == b.name and all(
            (a / f).read_bytes() == (b / f).read_bytes() for f in FILES
        )
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
