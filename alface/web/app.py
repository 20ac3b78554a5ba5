"""The labeling page as a Starlette app: sign-in, security headers, pictures, and the factory.

The store is opened in the app's lifespan and used only on its event loop (one SQLite
connection, one thread); pictures are drawn in worker threads from paths read before. The
pages themselves are in :mod:`alface.web.views`.
"""

from __future__ import annotations

import contextlib
import secrets as pysecrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from alface.config import CONFIG_ROOT, Config
from alface.errors import AlfaceError
from alface.web import WebError, auth
from alface.web.images import PictureError, crop_jpeg, frame_jpeg
from alface.web.work import Leases
from alface.workdir import Workdir

HERE = Path(__file__).resolve().parent
SESSION, NONCE = "alface_session", "alface_csrf"  # cookie names
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@dataclass
class PageState:
    """What every request reads: the work dir, the signing secret, leases, guidelines."""

    wd: Workdir
    secret: str
    leases: Leases
    guidelines: str  # HTML
    tokens_only: bool


def create_app(
    root: str | Path,
    overrides: Sequence[str] = (),
    tokens_only: bool = False,
    allowed_hosts: Sequence[str] | None = LOCAL_HOSTS,
) -> Starlette:
    """The labeling page of WORKDIR ``root``. ``tokens_only``: sign-in only with an access
    token (any host but this machine's); ``allowed_hosts``: Host headers served (None: any)."""
    from alface.web import views

    root = Path(root)
    # the page holds no work-dir lock: each click is one store transaction through
    # record_labels, safe beside the loop and other commands (docs/RELIABILITY.md)
    Workdir.open(root, overrides, lock_dir=False).close()  # a bad work dir or config fails here

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        wd = Workdir.open(root, overrides, command="label", lock_dir=False)
        try:
            app.state.page = PageState(wd, _secret(wd), Leases(), guidelines_html(wd.cfg),
                                       tokens_only)  # fmt: skip
            yield
        finally:
            wd.close()

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if (
        allowed_hosts is not None
    ) else []  # fmt: skip
    app = Starlette(
        routes=[
            Route("/", views.home),
            Route("/login", views.login, methods=["GET", "POST"]),
            Route("/logout", views.logout, methods=["POST"]),
            Route("/label", views.label_page),
            Route("/label", views.label_answer, methods=["POST"]),
            Route("/undo", views.undo, methods=["POST"]),
            Route("/grid", views.grid_page),
            Route("/review", views.review_page),
            Route("/review", views.review_answer, methods=["POST"]),
            Route("/img/{item_id:int}/{kind:str}", picture),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, AlfaceError: _alface_error},
    )
    app.add_middleware(_Headers)
    return app


TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))


# -- who is asking ---------------------------------------------------------------------------------
def state(request: Request) -> PageState:
    """The app's state."""
    return request.app.state.page


def annotator(request: Request) -> str | None:
    """The signed-in annotator, or None (a token replaced since the cookie was set: None)."""
    st = state(request)
    value = auth.unsign(st.secret, request.cookies.get(SESSION))
    if value is None or "\n" not in value:
        return None
    name, token = value.split("\n", 1)
    if token:
        return name if st.wd.store.labels.annotator_by_token(token) == name else None
    return None if st.tokens_only else name


def session_cookie(response: Response, secret: str, name: str, token_hash: str = "") -> None:
    """Sign ``name`` in on ``response``."""
    response.set_cookie(SESSION, auth.sign(secret, f"{name}\n{token_hash}"), httponly=True,
                        samesite="strict", max_age=30 * 86400)  # fmt: skip


def nonce(request: Request) -> str:
    """This browser's CSRF nonce (a new one, set on the response by the middleware, if none)."""
    if NONCE not in request.cookies and "new_nonce" not in request.scope:
        request.scope["new_nonce"] = pysecrets.token_urlsafe(24)
    return request.cookies.get(NONCE) or request.scope["new_nonce"]


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form, after the CSRF check (403 when the token does not match the nonce, or
    the request comes from another origin)."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-site request refused")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not auth.csrf_ok(state(request).secret, request.cookies.get(NONCE), form.get("csrf")):
        raise HTTPException(403, "form expired or forged (CSRF check): reload the page")
    return form


def render(request: Request, template: str, context: dict[str, Any], status: int = 200):
    """A page from ``template`` with what every page shows."""
    base = {"csrf": auth.csrf_token(state(request).secret, nonce(request)),
            "who": annotator(request), "tokens_only": state(request).tokens_only}  # fmt: skip
    return TEMPLATES.TemplateResponse(request, template, base | context, status_code=status)


def to(path: str) -> RedirectResponse:
    """A redirect after a POST (303: the browser GETs ``path``)."""
    return RedirectResponse(path, status_code=303)


# -- pictures ------------------------------------------------------------------------------------
async def picture(request: Request) -> Response:
    """A face (``face``) or its source frame with the box (``frame``), only by item id, only
    of faces sent to people in a batch, only for a signed-in annotator."""
    if annotator(request) is None:
        raise HTTPException(403, "sign in first")
    item_id, kind = request.path_params["item_id"], request.path_params["kind"]
    store, st = state(request).wd.store, state(request)
    if kind not in ("face", "frame") or not store.runs.in_any_batch(item_id):
        raise HTTPException(404, "no such picture")
    item = store.items.get([item_id])[0]
    try:
        if kind == "face":
            data = await run_in_threadpool(
                crop_jpeg, item.crop_file(st.wd.root), st.wd.cfg.preprocess.crop_size
            )
        elif item.source_path is None or item.box is None:
            raise HTTPException(404, "this face has no source frame")
        else:
            data = await run_in_threadpool(
                frame_jpeg, item.source_path, item.frame, item.box,
                st.wd.cfg.preprocess.max_megapixels,
            )  # fmt: skip
    except PictureError as e:
        raise HTTPException(404, str(e)) from e
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


# -- set-up --------------------------------------------------------------------------------------
def guidelines_html(cfg: Config) -> str:
    """The labeling guidelines as HTML (raw HTML in the file is shown as text): the file of
    ``annotate.guidelines``, else configs/guidelines/<labels.name>.md, else ''."""
    from markdown_it import MarkdownIt

    from alface.annotate.export import guidelines_path

    path = guidelines_path(cfg) or CONFIG_ROOT / "guidelines" / f"{cfg.labels.name}.md"
    if not path.is_file():
        return ""
    return (
        MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .render(path.read_text(encoding="utf-8"))
    )


def _secret(wd: Workdir) -> str:
    """The key that signs cookies, made once per work dir and kept in the store."""
    secret = wd.store.get_meta("web_secret")
    if secret is None:
        with wd.store.transaction("label"):
            secret = wd.store.get_meta("web_secret") or pysecrets.token_hex(32)
            wd.store.set_meta("web_secret", secret)
    return secret


def check_host(host: str, has_tokens: bool) -> None:
    """Refuse to serve beyond this machine while no annotator has an access token."""
    if not auth.is_loopback(host) and not has_tokens:
        raise WebError(
            f"--host {host} is reachable from other machines, which need an access token: "
            "add annotators with `alface label WORKDIR --add-annotator NAME` first"
        )


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot listen on (in use, not its own)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(infos[0][4])
    except OSError as e:
        raise WebError(f"cannot listen on {host} port {port}: {e.strerror or e}") from e


class _Headers:
    """Security headers on every response, and the CSRF nonce cookie where it was made."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"),
                            (b"x-frame-options", b"DENY")]  # fmt: skip
                if not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if new := scope.get("new_nonce"):
                    cookie = f"{NONCE}={new}; HttpOnly; SameSite=Strict; Path=/"
                    headers.append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if 300 <= exc.status_code < 400 and exc.headers and "Location" in exc.headers:
        return RedirectResponse(exc.headers["Location"], status_code=exc.status_code)
    if request.url.path.startswith(("/img/", "/static/")):
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
    return render(request, "message.html", {"title": "Not possible", "text": exc.detail},
                  exc.status_code)  # fmt: skip


async def _alface_error(request: Request, exc: Exception) -> Response:
    return render(request, "message.html", {"title": "Not possible", "text": str(exc)}, 400)
