"""The pages: sign-in, one face at a time, the grid, undo, and the review of disputed faces.

Each answer is one :func:`record_labels` call (one transaction) and a redirect to the next
face, so a reload never answers twice and a killed server loses only the face on screen.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from alface.annotate.record import LabelRow, SessionSpec, record_labels, withdraw_labels
from alface.classes import UNUSABLE
from alface.store import Item, Store
from alface.web import WebError, auth
from alface.web.app import annotator, form_of, render, session_cookie, state, to
from alface.web.images import video_rate
from alface.web.work import needs_label_from, next_entries, next_review, shows_guess

GRID_SIZE = 24
PAGE = "label page"  # the name of the page's label sessions


def _who(request: Request) -> str:
    """The signed-in annotator (else a redirect to the sign-in page)."""
    who = annotator(request)
    if who is None:
        raise _Redirect("/login")
    return who


class _Redirect(HTTPException):
    def __init__(self, path: str) -> None:
        super().__init__(303, headers={"Location": path})


def _int(value: str | None, what: str = "item") -> int:
    try:
        return int(str(value))
    except ValueError:
        raise HTTPException(400, f"{what} must be a number, got {value!r}") from None


# -- sign-in -------------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    """To the labeling page, or to sign-in."""
    return RedirectResponse("/label" if annotator(request) else "/login", status_code=303)


async def login(request: Request) -> Response:
    """GET: the sign-in form (or an access token's link); POST: sign in by name."""
    st = state(request)
    if request.method == "GET":
        token = request.query_params.get("token")
        if token is None:
            names = st.wd.store.labels.annotator_names()
            return render(request, "login.html", {"names": names, "error": None})
        name = st.wd.store.labels.annotator_by_token(auth.token_hash(token))
        if name is None:
            raise HTTPException(403, "this link is not valid (any more): ask for a new one")
        response = to("/label")  # the token leaves the address bar
        session_cookie(response, st.secret, name, auth.token_hash(token))
        return response
    form = await form_of(request)
    if st.tokens_only:
        raise HTTPException(403, "sign in with the link you were given")
    try:
        name = auth.check_name(form.get("name", ""))
    except WebError as e:
        names = st.wd.store.labels.annotator_names()
        return render(request, "login.html", {"names": names, "error": str(e)}, 400)
    with st.wd.store.transaction("label"):
        st.wd.store.labels.add_annotator(name)
    response = to("/label")
    session_cookie(response, st.secret, name)
    return response


async def logout(request: Request) -> Response:
    """Sign out."""
    await form_of(request)
    response = to("/login")
    response.delete_cookie("alface_session")
    return response


# -- one face at a time --------------------------------------------------------------------------
async def label_page(request: Request) -> Response:
    """The next face that needs this annotator's label (or ``?item=ID``: one they labeled, or
    one that waits for them)."""
    who, st = _who(request), state(request)
    store = st.wd.store
    asked = request.query_params.get("item")
    if asked is None:
        entries = next_entries(store, who, st.leases, 2)
        if not entries:
            held = len(st.leases.held_by_others(who))
            return render(request, "done.html", _counts(store, who) | {"held": held})
        item_id, after = entries[0].item_id, entries[1:]
    else:
        item_id, after = _int(asked), []
        mine = _mine(store, who, item_id)
        if mine is None and not needs_label_from(store, who, item_id):
            raise HTTPException(404, "this face does not wait for your label")
        st.leases.take(who, [item_id])
    return render(request, "label.html", await _face(request, item_id, who) | {
        "prefetch": [e.item_id for e in after], **_counts(store, who),
    })  # fmt: skip


async def label_answer(request: Request) -> Response:
    """Record one answer (a class or unusable) for one face; then the next face."""
    who, st = _who(request), state(request)
    form = await form_of(request)
    item_id = _int(form.get("item"))
    if not st.wd.store.runs.in_any_batch(item_id):
        raise HTTPException(404, "this face was not sent to people")
    _record(st.wd.store, st.wd.cfg.labels.classes, item_id, form.get("answer", ""), who, "label")
    st.leases.release(who, item_id)
    if form.get("view") == "grid":
        return to("/grid?" + _query(brush=form.get("brush", "")))
    return to("/label")


async def undo(request: Request) -> Response:
    """Take back this annotator's last label (or review) and show that face again."""
    who, st = _who(request), state(request)
    form = await form_of(request)
    kind = "review" if form.get("kind") == "review" else "label"
    last = st.wd.store.labels.latest_by(who, (kind,), limit=1)
    if not last:
        return to("/review" if kind == "review" else "/label")
    session = SessionSpec("review" if kind == "review" else "web", f"{PAGE}: undo",
                          annotator=who, annotation_kind=kind)  # fmt: skip
    withdraw_labels(st.wd.store, [last[0].item_id], session)
    return to(f"/{'review' if kind == 'review' else 'label'}?item={last[0].item_id}")


async def grid_page(request: Request) -> Response:
    """Many faces at once: pick a class (the brush), then click every face of that class."""
    who, st = _who(request), state(request)
    classes = st.wd.cfg.labels.classes
    brush = request.query_params.get("brush") or classes[0]
    if brush not in (*classes, UNUSABLE):
        raise HTTPException(400, f"unknown class {brush!r}")
    entries = next_entries(st.wd.store, who, st.leases, GRID_SIZE)
    faces = [{"id": e.item_id, "pair": e.annotators > 1} for e in entries]
    return render(request, "grid.html", {"faces": faces, "brush": brush, "classes": classes,
                                         **_counts(st.wd.store, who)})  # fmt: skip


# -- review ----------------------------------------------------------------------------------------
async def review_page(request: Request) -> Response:
    """A disputed face with every annotator's label side by side, for a reviewer to decide."""
    who, st = _who(request), state(request)
    store = st.wd.store
    asked = request.query_params.get("item")
    if asked is None:
        item_id = next_review(store, who, st.leases)
        if item_id is None:
            return render(request, "done.html", _counts(store, who) | {"review": True})
    else:
        item_id = _int(asked)
        if (
            item_id not in store.labels.review_queue()
            and _mine(store, who, item_id, "review") is None
        ):
            raise HTTPException(404, "this face is not in the review queue")
    labels = [a for a in store.labels.annotations([item_id]) if a.kind != "review"]
    return render(request, "review.html", await _face(request, item_id, who, "review") | {
        "labels": [{"who": a.annotator, "label": a.label} for a in labels],
        **_counts(store, who),
    })  # fmt: skip


async def review_answer(request: Request) -> Response:
    """Record a reviewer's decision (a review annotation, which settles the face)."""
    who, st = _who(request), state(request)
    form = await form_of(request)
    item_id = _int(form.get("item"))
    if not st.wd.store.labels.annotations([item_id]):
        raise HTTPException(404, "this face has no labels to review")
    _record(st.wd.store, st.wd.cfg.labels.classes, item_id, form.get("answer", ""), who, "review")
    st.leases.release(who, item_id)
    return to("/review")


# -- helpers ---------------------------------------------------------------------------------------
def _record(store: Store, classes: Any, item_id: int, answer: str, who: str, kind: str) -> None:
    """One answer through the label entry point: one session, one transaction."""
    session = SessionSpec(
        "review" if kind == "review" else "web", PAGE if kind == "label" else f"{PAGE}: review",
        annotator=who, annotation_kind=kind,
    )  # fmt: skip
    report = record_labels(store, [LabelRow(item_id, answer, row=1)], session, classes)
    if report.rejected or not report.n_rows:
        why = report.problems[0].why if report.problems else "no answer given"
        raise HTTPException(400, why)


def _mine(store: Store, who: str, item_id: int, kind: str = "label") -> Any:
    """``who``'s current annotation of ``kind`` for a face, or None."""
    return next(
        (a for a in store.labels.annotations([item_id]) if a.annotator == who and a.kind == kind),
        None,
    )


async def _face(request: Request, item_id: int, who: str, kind: str = "label") -> dict[str, Any]:
    """What the page shows of a face: pictures, where it came from, the model's guess where
    allowed, the annotator's own answer, and where back and undo lead."""
    st = state(request)
    store, cfg = st.wd.store, st.wd.cfg
    item = store.items.get([item_id])[0]
    entries = store.runs.entries_of(item_id)
    entry = next((e for e in reversed(entries)), None)
    batch = store.runs.batch(entry.batch_id) if entry else None
    pair = any(e.annotators > 1 for e in entries)
    guess = None
    if kind == "label" and entry and entry.predicted and batch:
        guess = entry.predicted if shows_guess(cfg.annotate, batch.kind, entry.annotators) else None
    mine = _mine(store, who, item_id, kind)
    back = store.labels.latest_by(who, (kind,), before=mine.id if mine else None, limit=1)
    rate = await run_in_threadpool(video_rate, item.source_path) if item.frame is not None else None
    return {
        "face": _provenance(item, rate), "batch": batch, "entry": entry, "pair": pair,
        "guess": guess, "mine": mine.label if mine else None,
        "back": back[0].item_id if back else None,
        "can_undo": bool(store.labels.latest_by(who, (kind,), limit=1)),
        "classes": cfg.labels.classes, "unusable": UNUSABLE, "guidelines": st.guidelines,
    }  # fmt: skip


def _provenance(item: Item, rate: float | None) -> dict[str, Any]:
    """Where a face came from, for the page."""
    time = None if rate is None or item.frame is None else item.frame / rate
    return {
        "id": item.id, "uid": item.uid, "source": item.source_path, "frame": item.frame,
        "time": None if time is None else f"{int(time // 60)}:{time % 60:04.1f}",
        "prob": None if item.prob is None else f"{item.prob:.3f}",
        "box": None if item.box is None else " ".join(f"{v:.0f}" for v in item.box),
        "has_frame": item.source_path is not None and item.box is not None,
    }  # fmt: skip


def _counts(store: Store, who: str) -> dict[str, Any]:
    """The progress bar's figures and the review queue's size."""
    return {"progress": store.runs.progress(who), "queue": len(store.labels.review_queue())}


def _query(**params: str) -> str:
    from urllib.parse import urlencode

    return urlencode(params)
