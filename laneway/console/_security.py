"""Who may look and who may act: loopback binding, the token, and same-origin checks.

The rules (the README repeats them for operators):

* Bound to a loopback address without a token, the console trusts the machine's
  own users: the page may view and operate with no token. A request must still
  name a loopback ``Host`` (so a DNS-rebinding page cannot reach it).
* Bound to any other address, a token is required for everything under
  ``/api``; one is generated when none is given.
* Every operation (a POST) must carry the token in the ``X-Laneway-Token``
  header (a custom header a cross-site page cannot send without a CORS
  preflight, which the console never answers), a JSON body, and, when the
  browser sends them, an ``Origin`` equal to the console's own and a
  ``Sec-Fetch-Site`` of ``same-origin``. In loopback mode without a token the
  header must still be present (its value is then ignored).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Mapping

import attrs

TOKEN_HEADER = "X-Laneway-Token"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for a loopback address or name (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe text)."""
    return secrets.token_urlsafe(32)


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``)."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@attrs.frozen
class Refusal:
    """Why a request was refused, with the HTTP status to answer."""

    status: int
    reason: str


@attrs.frozen
class Guard:
    """Checks requests against the console's binding and token.

    Attributes:
        loopback: whether the console is bound to a loopback address only.
        token: the token requests must carry; None (loopback only) means none needed.
    """

    loopback: bool
    token: str | None

    def check(self, method: str, scheme: str, headers: Mapping[str, str]) -> Refusal | None:
        """None when the request may proceed, else the refusal (an API request's headers)."""
        host = headers.get("Host", "")
        if self.loopback and not is_loopback(_host_name(host)):
            return Refusal(403, f"Host {host!r} is not a loopback name; the console is bound to loopback only")
        sent = headers.get(TOKEN_HEADER)
        if self.token is not None:
            if not sent or not hmac.compare_digest(sent.encode(), self.token.encode()):
                return Refusal(401, f"missing or wrong {TOKEN_HEADER} header: this console requires its token")
        if method in ("GET", "HEAD", "OPTIONS"):
            return None
        if sent is None:
            return Refusal(403, f"an operation must carry the {TOKEN_HEADER} header (sent by the console page)")
        origin = headers.get("Origin")
        if origin is not None and origin != f"{scheme}://{host}":
            return Refusal(403, f"cross-site request refused: Origin {origin!r} is not {scheme}://{host}")
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return Refusal(403, f"cross-site request refused: Sec-Fetch-Site is {site!r}")
        if headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            return Refusal(415, "an operation's body must be JSON (Content-Type: application/json)")
        return None
