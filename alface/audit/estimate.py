"""One estimate of group shares with its 95 % interval: what every audit estimator returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Estimate:
    """Shares (K,) of the K groups by ``method``, with the interval ``low`` (K,) .. ``high`` (K,)."""

    method: str  # raw, acc, pacc, ppi, classical
    shares: np.ndarray  # (K,) float64
    low: np.ndarray  # (K,)
    high: np.ndarray  # (K,)
    info: dict[str, Any]  # method-specific figures (n labeled, lambda, bootstrap replicates ...)

    def covers(self, truth: np.ndarray) -> np.ndarray:
        """(K,) bool: whether each interval holds the true share."""
        return (self.low <= truth) & (truth <= self.high)

    @property
    def width(self) -> np.ndarray:
        """(K,) interval widths."""
        return self.high - self.low

    def to_dict(self, classes: Sequence[str]) -> dict[str, Any]:
        """Plain data: per class share, low, high (floats), and ``info``."""
        rows = zip(classes, self.shares, self.low, self.high, strict=True)
        return {
            "method": self.method,
            "shares": {c: {"share": float(s), "low": float(lo), "high": float(hi)}
                       for c, s, lo, hi in rows},
            **({"info": self.info} if self.info else {}),
        }  # fmt: skip
