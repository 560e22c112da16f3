"""Connect to Redis from one URL, including through Redis Sentinel.

Why it exists: every process gets Redis from ``$REDIS_URL``.  ``redis://``,
``rediss://`` and ``unix://`` URLs go to ``Redis.from_url``; a Sentinel
deployment (high availability: the master can move) is named by a
``redis+sentinel://`` URL, which redis-py does not parse, so it is handled
here and turned into a client that asks the sentinels for the current master
on every (re)connect::

    redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB][?sentinel_password=...]

``PASSWORD`` is the data nodes' password; the sentinels' own password, if
they have one, is the ``sentinel_password`` query parameter.  Use
``rediss+sentinel://`` for TLS to both.  Passwords never appear in errors.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from redis import Redis

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """The URL cannot be understood (the message never contains a password)."""


class RedisUnusable(Exception):
    """Redis at a URL cannot be used (a bad URL, or no answer); the message names the URL
    without its password."""


def redact(url: str) -> str:
    """``url`` without its password (user names and query options other than passwords kept)."""
    if "://" not in url:  # `user:pw@host:6379`: urlsplit would take `user` for the scheme
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url  # and keep `pw` in the path
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hosts}" if user else hosts
    query = "&".join(p for p in parts.query.split("&") if p and "password" not in p.split("=")[0].lower())
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def connect_checked(url: str, **kwargs) -> Redis:
    """``connect`` that also asked for a PING; RedisUnusable otherwise (for a process's start)."""
    from redis.exceptions import RedisError
    from redis.sentinel import MasterNotFoundError

    try:
        conn = connect(url, **kwargs)
    except ValueError as exc:  # RedisUrlError, or redis-py's own (a scheme it does not know)
        raise RedisUnusable(f"bad Redis URL {redact(url)}: {exc}") from None
    try:
        conn.ping()
    except MasterNotFoundError:
        raise RedisUnusable(f"cannot reach Redis at {redact(url)}: {_why_no_master(conn)}") from None
    except (RedisError, OSError, ValueError) as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise RedisUnusable(f"cannot reach Redis at {redact(url)}: {text}") from None
    return conn


def _why_no_master(conn: Redis) -> str:
    """What each sentinel said.  redis-py's own message quotes every sentinel client's repr
    first, so a line cut to length loses the reason (a refused connection, a wrong password)."""
    from redis.exceptions import RedisError

    service = conn.connection_pool.service_name
    reasons = []
    for sentinel in conn.connection_pool.sentinel_manager.sentinels:
        where = "{host}:{port}".format(**sentinel.connection_pool.connection_kwargs)
        try:
            sentinel.ping()
            reasons.append(f"sentinel {where} names no usable master {service!r}")
        except (RedisError, OSError) as exc:
            text = " ".join(str(exc).split())[:200].rstrip(".") or type(exc).__name__
            reasons.append(f"sentinel {where}: {text}")
    return "; ".join(reasons) or f"no master found for {service!r}"


def parse_sentinel_url(url: str) -> dict:
    """The parts of a ``redis+sentinel://`` URL: sentinels, service, db, passwords, tls."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"not a Sentinel URL (expected {SENTINEL_SCHEMES[0]}://)")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username = password = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    sentinels = []
    for item in filter(None, hosts.split(",")):
        if item.startswith("["):  # [ipv6]:port
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.partition(":")
        try:
            sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise RedisUrlError(f"bad sentinel port in {scheme}:// URL: {port!r}") from None
    if not sentinels:
        raise RedisUrlError(f"{scheme}:// URL names no sentinel host")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise RedisUrlError(f"{scheme}:// URL must end in /SERVICE or /SERVICE/DB")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise RedisUrlError(f"bad database number in {scheme}:// URL: {parts[1]!r}") from None
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    return {"sentinels": sentinels, "service": unquote(parts[0]), "db": db, "username": username,
            "password": password, "sentinel_password": options.pop("sentinel_password", None),
            "tls": scheme == "rediss+sentinel", "options": options}


def connect(url: str, **kwargs) -> Redis:
    """A Redis client for ``url`` (extra keyword arguments go to the client)."""
    if not url.startswith(tuple(s + "://" for s in SENTINEL_SCHEMES)):
        return Redis.from_url(url, **kwargs)
    from redis.sentinel import Sentinel

    parts = parse_sentinel_url(url)
    common = {"ssl": True} if parts["tls"] else {}
    if "socket_timeout" in parts["options"]:
        common["socket_timeout"] = float(parts["options"]["socket_timeout"])
    sentinel_kwargs = dict(common)
    if parts["sentinel_password"]:
        sentinel_kwargs["password"] = parts["sentinel_password"]
    sentinel = Sentinel(parts["sentinels"], sentinel_kwargs=sentinel_kwargs, **common)
    return sentinel.master_for(parts["service"], db=parts["db"], username=parts["username"],
                               password=parts["password"], **kwargs)
