"""Run the app under uvicorn: the socket is bound first (a busy port fails in one line before the
model loads), loopback by default, and a warning for any other address.

    sock = bind("127.0.0.1", 8765)
    serve(create_app(segmenter), sock)      # until Ctrl-C
"""

from __future__ import annotations

import ipaddress
import socket

from ..errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
"""Host header names accepted when the server listens on loopback (refusing others stops DNS rebinding)."""


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_warning(host: str) -> str | None:
    """The warning printed when the server listens beyond this machine (None on loopback)."""
    if is_loopback(host):
        return None
    return (f"listening on {host}, not only on this machine: anyone who can reach it can run the model and, in "
            "folder mode, read the folder's sketches and write their annotations; there is no authentication")


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """Host names the app accepts: the loopback names (and `host` itself) when listening on loopback, else any (None)."""
    if not is_loopback(host):
        return None
    named = host.strip("[]").lower()
    named = f"[{named}]" if ":" in named else named
    return tuple(dict.fromkeys([*LOOPBACK_HOSTS, named]))


def bind(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. UsageError when it cannot be bound."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(app, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve `app` on the bound socket with uvicorn until interrupted (Ctrl-C, SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
