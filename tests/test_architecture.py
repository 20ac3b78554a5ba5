"""The layering rules of docs/ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "alface"
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_sql_outside_the_store():
    offenders = [
        f"{p.relative_to(PACKAGE.parent)}:{n}"
        for p in _modules()
        if "store" not in p.relative_to(PACKAGE).parts[:1]
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"sqlite3|\.conn\b|\bSELECT\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b", line)
    ]
    assert offenders == []


def test_no_module_over_the_size_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert {k: v for k, v in sizes.items() if v > MAX_LINES} == {}


def test_library_code_does_not_pick_devices():
    """Only device.py and the command layer call the device resolvers."""
    pattern = re.compile(r"\b(resolve_devices|torch_device|faiss_gpus|trainer_kwargs|cuda_count)\(")
    allowed = {"device.py", "cli.py"}
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if p.name not in allowed
        and "commands" not in p.relative_to(PACKAGE).parts
        and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
