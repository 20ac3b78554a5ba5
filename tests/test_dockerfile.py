"""The Dockerfile, parsed (no Docker engine on the development machines): a CUDA runtime base of
torch's own CUDA major, the gpu extra, a non-root user, and the work dir as a volume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
BASE = re.compile(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(?:cudnn-)?runtime-ubuntu\d\d\.\d\d")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    joined = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not (line.strip() or joined):
            continue
        joined += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            word, _, args = joined.strip().partition(" ")
            out.append((word.upper(), args.strip()))
            joined = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions((REPO / "Dockerfile").read_text())


def _args(dockerfile: list[tuple[str, str]], word: str) -> list[str]:
    return [args for w, args in dockerfile if w == word]


def test_parser_joins_continuations_and_drops_comments():
    text = "# c\nFROM a:1\n\nRUN x \\\n && y\nUSER bob\n"
    assert instructions(text) == [("FROM", "a:1"), ("RUN", "x   && y"), ("USER", "bob")]


def test_base_image_is_a_cuda_runtime_of_torchs_cuda_major(dockerfile):
    (base,) = _args(dockerfile, "FROM")
    match = BASE.fullmatch(base.split(" AS ")[0])
    assert match, f"{base}: not an nvidia/cuda:X.Y.Z-runtime-ubuntuNN.NN image"
    if torch.version.cuda is None:
        pytest.skip(f"torch {torch.__version__} is a CPU-only build: no CUDA major to match")
    assert match.group(1) == torch.version.cuda.split(".")[0], (base, torch.version.cuda)


def test_runs_as_a_non_root_user(dockerfile):
    words = [w for w, _ in dockerfile]
    users = _args(dockerfile, "USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert words.index("ENTRYPOINT") > max(i for i, w in enumerate(words) if w == "USER")
    created = " ".join(_args(dockerfile, "RUN"))
    assert re.search(rf"useradd\b.*\b{re.escape(users[-1].split(':')[0])}\b", created)


def test_work_dir_is_a_volume_that_the_docs_mount(dockerfile):
    volumes = []
    for args in _args(dockerfile, "VOLUME"):
        volumes += json.loads(args) if args.startswith("[") else args.split()
    assert "/work" in volumes
    assert _args(dockerfile, "WORKDIR")[-1] == "/work"
    scaling = (REPO / "docs" / "SCALING.md").read_text()
    assert re.search(r'docker run [^\n]*-v "\$PWD/work:/work" alface', scaling)


def test_installs_the_gpu_extra(dockerfile):
    runs = " ".join(_args(dockerfile, "RUN"))
    match = re.search(r"make install EXTRAS=(\S+)", runs) or re.search(r"\.\[([^\]]+)\]", runs)
    assert match, "no `make install EXTRAS=...` or `pip install .[...]` line"
    extras = match.group(1).strip("\"'").split(",")
    assert "gpu" in extras and "cpu" not in extras
