"""CurveZMQ keys for pools that accept workers from other hosts.

A cloudpickled task is code execution, so a pool listening beyond loopback must
know who connects. ``laneway keys DIR`` writes this layout (key files are
z85-encoded, as ``zmq.auth`` writes them; secret files are mode 0600)::

    DIR/server.key            the pool's public key    -> copy to every worker host
    DIR/server.key_secret     the pool's secret key    -> stays on the pool host
    DIR/<name>.key            a worker's public key
    DIR/<name>.key_secret     a worker's secret key    -> copy to that worker's host only
    DIR/authorized/<name>.key public keys the pool admits (delete one to revoke a worker)

The pool reads ``server.key_secret`` and ``authorized/``; a worker reads
``server.key`` and its own ``<name>.key_secret``. Unknown keys fail the CurveZMQ
handshake inside libzmq, so their messages never reach the pool.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import zmq

from laneway.errors import AuthError, ConfigError
from laneway.worker._process import CurveClient

log = logging.getLogger(__name__)

SERVER = "server"
AUTHORIZED = "authorized"
DEFAULT_CLIENT = "client"


def create_keys(
    directory: str | os.PathLike, clients: Iterable[str] = (DEFAULT_CLIENT,), *, overwrite: bool = False
) -> list[Path]:
    """Write a server key pair (unless present) and one client key pair per name; returns the files written.

    Raises:
        ConfigError: a client name is not a plain name, or (unless ``overwrite``) a
            client key pair of that name exists: replacing it would lock out the
            worker that holds it.

    Example:
        >>> create_keys(tmp_path / "keys", ["worker1", "worker2"])      # doctest: +SKIP
    """
    root = Path(directory)
    (root / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    written: list[Path] = []
    names = list(clients)
    for name in names:
        if not name or "/" in name or name == SERVER or name == AUTHORIZED:
            raise ConfigError(f"client key name must be a plain name other than {SERVER!r}, got {name!r}")
    existing = [name for name in names if (root / f"{name}.key_secret").exists() or (root / f"{name}.key").exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"client key pairs {existing} already exist in {root}; refusing to replace them "
            "(the workers holding them would be locked out): pass --force (overwrite=True) to replace them"
        )
    if not (root / f"{SERVER}.key_secret").exists():
        written += _pair(root, SERVER)
    for name in names:
        written += _pair(root, name)
        shutil.copy(root / f"{name}.key", root / AUTHORIZED / f"{name}.key")
        written.append(root / AUTHORIZED / f"{name}.key")
    return written


def _pair(root: Path, name: str) -> list[Path]:
    public, secret = _auth().create_certificates(str(root), name)
    os.chmod(secret, 0o600)
    return [Path(public), Path(secret)]


def load_server(directory: str | os.PathLike) -> tuple[bytes, bytes, frozenset[bytes]]:
    """``(public, secret, authorized client public keys)`` for a pool.

    Raises:
        AuthError: the directory lacks the server's secret key or any authorized client key.
    """

    root = Path(directory)
    secret_file = root / f"{SERVER}.key_secret"
    if not secret_file.is_file():
        raise AuthError(f"no {secret_file}: create keys with `laneway keys {root}`")
    public, secret = _auth().load_certificate(str(secret_file))
    allowed = frozenset(
        _auth().load_certificate(str(p))[0] for p in sorted((root / AUTHORIZED).glob("*.key"))
    ) if (root / AUTHORIZED).is_dir() else frozenset()
    if not allowed:
        log.warning("no authorized worker keys in %s; only the pool's own workers can join", root / AUTHORIZED)
    if secret is None:
        raise AuthError(f"{secret_file} holds no secret key")
    return public, secret, allowed


def load_client(directory: str | os.PathLike, name: str = DEFAULT_CLIENT) -> CurveClient:
    """The keys a worker joins with: its own pair and the server's public key.

    Raises:
        AuthError: a key file is missing or holds no secret.
    """

    root = Path(directory)
    server_file, own_file = root / f"{SERVER}.key", root / f"{name}.key_secret"
    for f in (server_file, own_file):
        if not f.is_file():
            raise AuthError(f"missing key file {f}: copy it from the pool host (see `laneway keys`)")
    server_public, _ = _auth().load_certificate(str(server_file))
    public, secret = _auth().load_certificate(str(own_file))
    if secret is None:
        raise AuthError(f"{own_file} holds no secret key")
    return CurveClient(server_public, public, secret)


def _auth() -> Any:
    """``zmq.auth``, imported on first use: it pulls in asyncio, and a local worker (which
    imports this package at every start, and every restart) never needs it."""
    import zmq.auth

    return zmq.auth


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` endpoints and tcp on a loopback address.

    Example:
        >>> is_loopback("tcp://127.0.0.1:5555"), is_loopback("tcp://0.0.0.0:5555")
        (True, False)
    """
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False


class _Allowed:
    """Credentials provider for zmq.auth: admits a fixed set of client public keys."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = set(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys
        if not ok:
            log.warning("refused a worker with unknown CurveZMQ key %s", key.decode(errors="replace"))
        return ok


class CurveServer:
    """Makes a ROUTER socket a CurveZMQ server admitting only authorized keys plus local workers' keys."""

    def __init__(self, ctx: zmq.Context, directory: str | os.PathLike) -> None:
        self.public, self._secret, allowed = load_server(directory)
        # One ephemeral pair for the workers this pool spawns itself; never written to disk.
        self.local_public, self._local_secret = zmq.curve_keypair()
        self._allowed = _Allowed(allowed | {self.local_public})
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(ctx)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self._allowed)

    def secure(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self._secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def local_client(self) -> CurveClient:
        return CurveClient(self.public, self.local_public, self._local_secret)

    def stop(self) -> None:
        self._auth.stop()


def bind_router(ctx: zmq.Context, address: str, keys: str | os.PathLike | None) -> tuple[zmq.Socket, CurveServer | None]:
    """A ROUTER bound to ``address`` with unbounded queues, a CurveZMQ server when ``keys`` is given.

    The pool's workers and remote actor hosts connect to such a socket. On failure nothing
    is left open (the caller's context stays the caller's to end).

    Returns:
        The socket and its :class:`CurveServer` (``None`` without keys), to ``stop()`` after the socket closes.
    """
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.SNDHWM, 0)
    router.setsockopt(zmq.RCVHWM, 0)
    curve: CurveServer | None = None
    try:
        if keys is not None:
            curve = CurveServer(ctx, keys)
            curve.secure(router)
        router.bind(address)
    except Exception:
        router.close()
        if curve is not None:
            curve.stop()
        raise
    return router, curve
