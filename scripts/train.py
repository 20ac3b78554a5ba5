"""Retrain the classifier on the labeled set and evaluate it on the overfitting and
iteration-validation sets.

Same as ``alface train WORKDIR [key=value ...]``, e.g. ``backbone=efficientnet_b0``.
"""

from __future__ import annotations

import sys

from alface.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
