"""Score the pool with the current model, select the next batch and write it for labeling.

Same as ``alface select WORKDIR --out DIR [--strategy NAME] [--size B] [key=value ...]``.
"""

from __future__ import annotations

import sys

from alface.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["select", *sys.argv[1:]]))
