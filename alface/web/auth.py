"""Who is labeling: annotator names, access tokens, signed session cookies and CSRF tokens.

Pure functions over strings; the secret that signs cookies lives in the store's meta table
(so a restarted server keeps everyone signed in) and only token hashes are stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets

from alface.web import WebError

NAME = re.compile(r"^[\w][\w .@+-]{0,39}$")  # letters, digits, and . @ + - _ and inner spaces
RESERVED = ("oracle",)  # the simulated annotator's name


def check_name(name: str) -> str:
    """``name`` trimmed, or a WebError saying what a name may hold."""
    name = name.strip()
    if not NAME.match(name):
        raise WebError(
            f"annotator name {name!r}: use 1-40 letters, digits, spaces or . @ + - _ "
            "(starting with a letter or digit)"
        )
    if name.casefold() in RESERVED:
        raise WebError(f"annotator name {name!r} is reserved for the simulated annotator")
    return name


def new_token() -> str:
    """A fresh random access token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The hex sha256 of a token: what the store keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, value: str) -> str:
    """``value`` with an HMAC-SHA256 signature, cookie-safe: base64(value).signature."""
    body = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    return f"{body}.{_mac(secret, body)}"


def unsign(secret: str, signed: str | None) -> str | None:
    """The value of a :func:`sign` ed string, or None when it is missing or tampered with."""
    if not signed or signed.count(".") != 1:
        return None
    body, mac = signed.split(".")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def csrf_token(secret: str, nonce: str) -> str:
    """The token a form must send back: bound to the browser's random ``nonce`` cookie."""
    return _mac(secret, "csrf\0" + nonce)


def csrf_ok(secret: str, nonce: str | None, sent: str | None) -> bool:
    """Whether a POST's token matches its nonce cookie."""
    return bool(nonce and sent) and hmac.compare_digest(csrf_token(secret, nonce), str(sent))


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
