"""The Procfile's web workers share keep-alive connections evenly (``webhook.accept_balance``):
against the real gunicorn, connections opened one after another and kept open are held by the
two workers in turn, never more than ``SLACK + 1`` apart once both are up.  Left to the kernel, the workers race
for each connection and one gets a run of them (bench/intake saw 44/20 of 64)."""

from __future__ import annotations

import socket
import time
from collections import Counter

import pytest

from tests.webhook.conftest import GENEROUS, running_web
from webhook import accept_balance

CONNECTIONS = 30


@pytest.fixture
def pid_web(tmp_path):
    with running_web(tmp_path, workers=2, app="tests.webhook.pid_app:app") as running:
        yield running


def served_by(sock: socket.socket) -> int:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(4096)
        assert chunk, answer
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return int(body)


def both_workers_up(port: int) -> None:
    """Until each of the two workers has answered (a connection of its own, closed at once)."""
    seen: set[int] = set()
    deadline = time.monotonic() + GENEROUS  # only so a broken server cannot hang the suite
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {seen} answered"
        with socket.create_connection(("127.0.0.1", port), timeout=GENEROUS) as sock:
            seen.add(served_by(sock))


def test_connections_kept_open_are_held_by_the_workers_in_turn(pid_web):
    _, port, _ = pid_web
    both_workers_up(port)
    opened: list[tuple[socket.socket, int]] = []
    try:
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
            opened.append((sock, served_by(sock)))
        assert [served_by(sock) for sock, _ in opened] == [pid for _, pid in opened]  # each kept its worker
    finally:
        for sock, _ in opened:
            sock.close()
    order = [pid for _, pid in opened]
    assert len(set(order)) == 2, order
    # From the first moment both workers hold connections about evenly (the second may still have been
    # booting when the first connections came: they all went to the first), they stay even.
    held: Counter[int] = Counter({pid: 0 for pid in order})
    even_since, widest = None, 0
    for step, pid in enumerate(order):
        held[pid] += 1
        apart = max(held.values()) - min(held.values())
        if even_since is None and min(held.values()) > 0 and apart <= accept_balance.SLACK + 1:
            even_since = step
        elif even_since is not None:
            widest = max(widest, apart)
    assert even_since is not None and widest <= accept_balance.SLACK + 1, (order, even_since, widest)
