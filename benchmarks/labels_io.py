"""Time the label round trip at a realistic size: write a batch (CSV, tasks.json, contact sheet)
and import a CSV of labels into a store of N items.

    .venv/bin/python benchmarks/labels_io.py --items 10000 --batch 200
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alface.annotate.agreement import summarize
from alface.annotate.export import assign_pairs, write_batch
from alface.annotate.ingest import import_labels
from alface.config import Config
from alface.store import NewItem
from alface.workdir import Workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cfg = Config()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "work"
        wd = Workdir.init(root, cfg)
        (root / "crops").mkdir()
        records = []
        for i in range(args.items):
            path = root / "crops" / f"{i}.jpg"
            if i < args.batch:  # only the batch's crops are read (by the contact sheet)
                Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(path)
            records.append(NewItem(f"crops/{i}.jpg", hashlib.sha1(str(i).encode()).hexdigest()))
        with wd.store.transaction("bench"):
            ids = wd.store.items.add(records, pool=1)
        entries = [{"item_id": i, "cluster": k % 10, "reason": "near", "score": 1.0,
                    "predicted": "White"} for k, i in enumerate(ids[: args.batch])]  # fmt: skip
        entries = assign_pairs(entries, cfg.annotate.pair_fraction, rng)
        t = time.perf_counter()
        write_batch(Path(tmp) / "batch", wd.store, entries, cfg, 1)
        t_export = time.perf_counter() - t
        uids = [r.uid for r in wd.store.items.get()]
        labels = rng.choice(cfg.labels.classes, size=len(uids))
        csv_path = Path(tmp) / "labels.csv"
        csv_path.write_text(
            "item,label\n" + "".join(f"{u},{lab}\n" for u, lab in zip(uids, labels, strict=True))
        )
        t = time.perf_counter()
        report = import_labels(wd.store, csv_path, cfg.labels.classes, annotator="bench")
        t_import = time.perf_counter() - t
        t = time.perf_counter()
        summarize(wd.store, cfg)
        t_summary = time.perf_counter() - t
        wd.close()
    print(f"write_batch ({args.batch} faces, sheet included): {t_export:.2f} s")
    print(f"import_labels ({report.n_imported} labels, store of {args.items}): {t_import:.2f} s")
    print(f"summarize ({args.items} labels): {t_summary:.2f} s")


if __name__ == "__main__":
    main()
