"""Handing out faces: which face an annotator or reviewer sees next, and who holds which.

The store says what needs a label from whom (:meth:`Runs.todo`, the review queue); leases, kept
in the server's memory only, keep two people from being shown the same face at once. A lease
ends when its holder answers, or after :data:`LEASE_SECONDS` (a closed tab); a lost lease only
means a face might be shown twice, never that an answer is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from alface.config import AnnotateConfig
from alface.store import BatchEntry, Store

LEASE_SECONDS = 600.0


class Leases:
    """Which faces are on whose screen (thread-safe)."""

    def __init__(self, seconds: float = LEASE_SECONDS, clock: Callable[[], float] = time.time):
        self.seconds, self.clock = seconds, clock
        self._held: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def held_by_others(self, who: str) -> set[int]:
        """Faces leased, unexpired, to anyone but ``who``."""
        now = self.clock()
        with self._lock:
            return {i for i, (name, until) in self._held.items() if name != who and until > now}

    def take(self, who: str, item_ids: Sequence[int]) -> None:
        """Lease ``item_ids`` to ``who`` (renewing theirs)."""
        until = self.clock() + self.seconds
        with self._lock:
            for i in item_ids:
                self._held[int(i)] = (who, until)

    def release(self, who: str, item_id: int) -> None:
        """End ``who``'s lease of a face."""
        with self._lock:
            if self._held.get(int(item_id), ("",))[0] == who:
                del self._held[int(item_id)]


def next_entries(store: Store, who: str, leases: Leases, n: int = 1) -> list[BatchEntry]:
    """The next ``n`` batch entries that need ``who``'s label and no one else holds; leased
    to ``who``."""
    busy = leases.held_by_others(who)
    out = [e for e in store.runs.todo(who, n + len(busy)) if e.item_id not in busy][:n]
    leases.take(who, [e.item_id for e in out])
    return out


def next_review(store: Store, who: str, leases: Leases) -> int | None:
    """The first face of the review queue no one else holds (leased to ``who``), or None."""
    busy = leases.held_by_others(who)
    found = next((i for i in store.labels.review_queue() if i not in busy), None)
    if found is not None:
        leases.take(who, [found])
    return found


def needs_label_from(store: Store, who: str, item_id: int) -> bool:
    """Whether a face waits in an open batch for a label from ``who``."""
    entries = store.runs.entries_of(item_id, open_only=True)
    if not entries or store.labels.rule_of(item_id) is not None:
        return False
    anns = store.labels.annotations([item_id])
    if any(a.annotator == who for a in anns):
        return False
    return len({a.annotator for a in anns}) < max(e.annotators for e in entries)


def shows_guess(cfg: AnnotateConfig, batch_kind: str, annotators: int) -> bool:
    """Whether the page may show the model's guess for a face of ``batch_kind`` sent to
    ``annotators`` people (anchoring: off for pairs and the itval set unless the config allows)."""
    if annotators > 1:
        return cfg.show_guess_pairs
    if batch_kind == "itval":
        return cfg.show_guess_itval
    return cfg.show_guess
