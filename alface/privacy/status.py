"""What `alface status` says about privacy: who can read the work dir, faces past retention,
models trained on forgotten faces, a forget not finished, terms not recorded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alface.config import Config
from alface.privacy.forget import DAY
from alface.privacy.permissions import check_access
from alface.store import Store
from alface.workdir import PENDING_KEY


def privacy_status(store: Store, cfg: Config, now: float | None = None) -> dict[str, Any]:
    """The privacy part of the status (JSON-ready), with ``warnings``: one line each, saying
    what to do."""
    now = time.time() if now is None else now
    root, warnings = store.root, []
    outside = [Path(b.out_dir) for b in store.runs.batches()
               if b.out_dir and Path(b.out_dir).is_absolute()]  # fmt: skip
    access = check_access([root, *dict.fromkeys(outside)])
    if not access.private:
        warnings.append(
            f"{access.loose} of {access.checked} files and folders of the work dir (or its batch "
            f"folders) can be read or written by others than you, e.g. {access.examples[0]}: "
            f"faces are biometric data; `chmod -R go-rwx {root}` makes them private again"
        )
    registered = store.privacy.count_registered()
    days = cfg.privacy.retention_days
    expired = store.privacy.count_added_before(now - days * DAY) if days else 0
    if expired:
        warnings.append(
            f"{expired} face(s) were added more than privacy.retention_days ({days:g}) days ago: "
            f"`alface forget {root} --expired` removes them"
        )
    models = [{"id": m.id, "forgotten": m.forgotten} for m in store.runs.models() if m.forgotten]
    latest = store.runs.latest_model()
    if latest is not None and latest.forgotten:
        warnings.append(
            f"the latest model ({latest.id}) was trained on {latest.forgotten} face(s) forgotten "
            f"since: retrain it (`alface train {root}`) before using or exporting it"
        )
    pending = store.get_meta(PENDING_KEY) is not None
    if pending:
        warnings.append(
            "a forget was cut short, or a reader kept the store's log open: the next command that "
            f"writes to the work dir finishes it (`alface forget {root} --finish` does only that)"
        )
    no_terms, n_sources = store.privacy.sources_without_terms()
    forgets = store.privacy.forgets()
    return {
        "access": {"private": access.private, "checked": access.checked, "loose": access.loose,
                   "examples": access.examples},
        "registered_crops": registered,
        "retention_days": days, "expired": expired,
        "models_to_retrain": models, "forget_pending": pending,
        "sources_without_terms": no_terms, "sources": n_sources,
        "forgets": len(forgets),
        "last_forget": None if not forgets else {
            k: forgets[-1].get(k) for k in ("at", "selector", "faces", "by", "reference")
        },
        "warnings": warnings,
    }  # fmt: skip


def privacy_lines(p: dict[str, Any]) -> list[str]:
    """The privacy part of the status for people (the warnings are printed apart)."""
    access = "private to you" if p["access"]["private"] else f"{p['access']['loose']} opened up"
    days = p["retention_days"]
    kept = f"{days:g} days ({p['expired']} past it)" if days else "not set (kept until forgotten)"
    line = (
        f"privacy: files {access} ({p['access']['checked']} checked); retention {kept}; terms "
        f"recorded for {p['sources'] - p['sources_without_terms']} of {p['sources']} source(s)"
    )
    if p["registered_crops"]:
        line += (f"; {p['registered_crops']} face(s) are your own files outside the work dir "
                 "(preprocess --cropped): their permissions are yours to keep private")  # fmt: skip
    if p["forgets"]:
        last = p["last_forget"]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["at"]))
        line += f"; {p['forgets']} forget(s), the last on {when} ({last['faces']} face(s))"
    return [line]
