"""The failed-authentication limit behind a proxy, under gunicorn as the Procfile runs it: it counts
REMOTE_ADDR, which gunicorn takes from the connection. Every client of one proxy (or NAT) is one
address, and `forwarded_allow_ips` does not change that (it only says whose X-Forwarded-Proto gunicorn
believes). A proxy that speaks the PROXY protocol, with gunicorn's `--proxy-protocol` and
`--proxy-allow-from` set to the proxy's address, makes it each client's own again."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_gunicorn import start_gunicorn
from webhook_service.web import auth_limit

KEY = "proxy-limit-key-0123456789abcdef"


def ask(port: int, key: str, client: str | None = None, forwarded_for: str | None = None) -> int:
    """One request over its own connection, as a proxy would send it: for `client`, in a PROXY protocol
    line first when given, or with an X-Forwarded-For header; the answer's status code."""
    head = f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n" if client else ""
    forwarded = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    request = (
        f"{head}GET /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"{forwarded}Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def _serving(port: int) -> bool:
    try:
        return ask(port, KEY) == 200
    except OSError:
        return False


@pytest.fixture
def behind_a_proxy(env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """gunicorn taking PROXY protocol lines from loopback (where the test's "proxy" connects from),
    with every forwarding header trusted from there too."""
    port = free_port()
    proxy = {"GUNICORN_CMD_ARGS": "--proxy-protocol v1 --proxy-allow-from 127.0.0.1"}
    served = {**env, "SERVICE_API_KEYS": KEY, "FORWARDED_ALLOW_IPS": "127.0.0.1", **proxy}
    with (tmp_path / "gunicorn.log").open("w") as log:
        process = start_gunicorn(served, port, tmp_path / "metrics", stderr=log)
    try:
        wait_for(lambda: _serving(port), timeout=30, what="gunicorn to serve")
        yield port
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_clients_of_one_proxy_share_a_count_unless_it_names_them_by_the_proxy_protocol(
    behind_a_proxy: int,
) -> None:
    port = behind_a_proxy
    # X-Forwarded-For, even from an address forwarded_allow_ips trusts, is not who gunicorn says called.
    for n in range(auth_limit.MAX_FAILURES):
        assert ask(port, f"guess-{n}", forwarded_for="203.0.113.7") == 401
    assert (
        ask(port, KEY, forwarded_for="198.51.100.1") == 429
    )  # another client, the same connection's address

    # Named in a PROXY protocol line, each client is counted as itself.
    for n in range(auth_limit.MAX_FAILURES):
        assert ask(port, f"guess-{n}", client="203.0.113.7") == 401
    assert ask(port, KEY, client="203.0.113.7") == 429
    assert ask(port, KEY, client="198.51.100.1") == 200
