"""Active learning vs random: learning curves over several seeds, with the simulated oracle.

Same as ``alface benchmark --config FILE [--seeds N] [--out DIR] [key=value ...]``, e.g.
``scripts/benchmark.py --config configs/experiment/utkface.yaml --seeds 5``.
"""

from __future__ import annotations

import sys

from alface.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["benchmark", *sys.argv[1:]]))
