"""`alface label`: the labeling page (annotators, pairs, review) in the browser."""

from __future__ import annotations

import argparse

from alface.commands.common import add_overrides, add_workdir, open_workdir

HELP = "the labeling page: label the open batches in a browser (pairs, review, unusable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workdir(parser)
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only; any other address "
        "needs annotators with access tokens, see --add-annotator)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--add-annotator", metavar="NAME",
        help="give NAME an access token and print their sign-in link (a new link replaces the "
        "old one), then exit",
    )  # fmt: skip
    add_overrides(parser)


def run(args: argparse.Namespace) -> int:
    from alface.web import auth
    from alface.web.app import LOCAL_HOSTS, check_host, check_port, create_app

    host = f"[{args.host}]" if ":" in args.host else args.host
    with open_workdir(args) as wd:
        if args.add_annotator is not None:
            name = auth.check_name(args.add_annotator)
            token = auth.new_token()
            with wd.store.transaction("label"):
                wd.store.labels.add_annotator(name, auth.token_hash(token))
            print(f"sign-in link for {name} (keep it private; it labels as {name}):")
            print(f"http://{host}:{args.port}/login?token={token}")
            return 0
        check_host(args.host, bool(wd.store.labels.annotator_names(with_token=True)))
    check_port(args.host, args.port)
    import uvicorn

    local = auth.is_loopback(args.host)
    app = create_app(
        args.workdir, args.overrides or (), tokens_only=not local,
        allowed_hosts=(*LOCAL_HOSTS, args.host) if local else None,
    )  # fmt: skip
    print(f"labeling page: http://{host}:{args.port}/  (Ctrl-C stops it; every answer is saved)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
