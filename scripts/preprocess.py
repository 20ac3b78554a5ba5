"""Detect faces in images, folders and videos and add the crops to the pool.

Same as ``alface preprocess WORKDIR INPUT... [--every-n-frames N] [key=value ...]``.
"""

from __future__ import annotations

import sys

from alface.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["preprocess", *sys.argv[1:]]))
