"""REDIS_URL through Redis Sentinel: a real master, replica and sentinel, and a real failover."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis

from pullbridge.redis_url import RedisUnusable, RedisUrlError, connect, connect_checked, parse_sentinel_url


def test_parse_sentinel_urls():
    p = parse_sentinel_url("redis+sentinel://:s%40cret@s0:26379,s1,[::1]:26380/mymaster/3"
                           "?sentinel_password=sp&socket_timeout=5")
    assert p["sentinels"] == [("s0", 26379), ("s1", 26379), ("::1", 26380)]
    assert (p["service"], p["db"], p["password"], p["sentinel_password"]) == ("mymaster", 3, "s@cret", "sp")
    assert p["options"] == {"socket_timeout": "5"} and not p["tls"]
    assert parse_sentinel_url("rediss+sentinel://h/svc")["tls"]
    for bad in ("redis+sentinel:///svc", "redis+sentinel://h:x/svc", "redis+sentinel://h",
                "redis+sentinel://h/svc/notadb", "redis+sentinel://h/a/1/2"):
        with pytest.raises(RedisUrlError) as err:
            parse_sentinel_url(bad)
        assert "cret" not in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str):
    # Readiness polling, not a timing assertion; a generous bound only stops a hung test.
    for _ in range(1200):
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


@pytest.fixture
def sentinel_setup(tmp_path):
    master, replica, sentinel = _free_port(), _free_port(), _free_port()
    procs = []

    def start(*args):
        procs.append(subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=tmp_path))

    start("--port", str(master), "--bind", "127.0.0.1", "--save", "")
    start("--port", str(replica), "--bind", "127.0.0.1", "--save", "", "--replicaof", "127.0.0.1",
          str(master))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel}\nbind 127.0.0.1\n"
                    f"sentinel monitor pb 127.0.0.1 {master} 1\n"
                    "sentinel down-after-milliseconds pb 1000\nsentinel failover-timeout pb 10000\n")
    start(str(conf), "--sentinel")
    try:
        m = redis.Redis(port=master)
        _wait(lambda: m.info("replication")["connected_slaves"] == 1, "the replica")
        _wait(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up",
              "the replica's link")
        s = redis.Redis(port=sentinel)
        _wait(lambda: s.execute_command("SENTINEL", "REPLICAS", "pb"), "the sentinel to see the replica")
        yield master, replica, sentinel
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def test_connect_follows_a_failover(sentinel_setup):
    master, replica, sentinel = sentinel_setup
    conn = connect(f"redis+sentinel://127.0.0.1:{sentinel}/pb/2")
    conn.set("before", "1")
    assert redis.Redis(port=master, db=2).get("before") == b"1"
    # Replication is asynchronous: let the write reach the replica before promoting it.
    _wait(lambda: redis.Redis(port=replica, db=2).get("before") == b"1", "replication")
    sentinel_conn = redis.Redis(port=sentinel)
    # NOGOODSLAVE until the sentinel has fresh INFO from the replica: retried by _wait.
    _wait(lambda: sentinel_conn.execute_command("SENTINEL", "FAILOVER", "pb"), "a failover to start")
    _wait(lambda: int(sentinel_conn.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "pb")[1])
          == replica, "the failover")
    _wait(lambda: redis.Redis(port=replica).info("replication")["role"] == "master", "the promotion")

    def write_lands_on_new_master():
        conn.set("after", "2")
        return redis.Redis(port=replica, db=2).get("after") == b"2"

    _wait(write_lands_on_new_master, "writes to reach the new master")
    assert conn.get("before") == b"1"


def test_no_sentinel_reachable_names_each_sentinel_and_its_error():
    """redis-py's message quotes each sentinel client's repr first; cut to a line it lost the reason."""
    first, second = _free_port(), _free_port()
    with pytest.raises(RedisUnusable) as err:
        connect_checked(f"redis+sentinel://:sekrit@127.0.0.1:{first},127.0.0.1:{second}/pb")
    assert str(err.value) == (
        f"cannot reach Redis at redis+sentinel://127.0.0.1:{first},127.0.0.1:{second}/pb: "
        f"sentinel 127.0.0.1:{first}: Error 111 connecting to 127.0.0.1:{first}. Connection refused; "
        f"sentinel 127.0.0.1:{second}: Error 111 connecting to 127.0.0.1:{second}. Connection refused")


def test_a_sentinel_without_the_service_says_so(sentinel_setup):
    _, _, sentinel = sentinel_setup
    with pytest.raises(RedisUnusable) as err:
        connect_checked(f"redis+sentinel://127.0.0.1:{sentinel}/nope")
    assert str(err.value) == (f"cannot reach Redis at redis+sentinel://127.0.0.1:{sentinel}/nope: "
                              f"sentinel 127.0.0.1:{sentinel} names no usable master 'nope'")


def test_plain_urls_still_work(stack):
    conn = connect(stack.redis_test_url)
    assert conn.ping()
