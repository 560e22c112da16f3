"""What the registries said, cached in Redis with a TTL.

Why it exists: a scan runs every few minutes for every automated container,
and a registry webhook triggers more; without a cache each scan would list
every tag and read two documents per matching tag.  Tag lists and tag ->
(digest, created) answers are kept for ``images.cache_ttl``; a registry
notification for an image drops that image's entries so the next scan sees
the new tag at once.
"""

from __future__ import annotations

import json
from datetime import datetime

from redis import Redis

from pullbridge import keys
from pullbridge.config import ImagesSettings
from worker.images.registry import ImageRef, RegistryClient, TagInfo, parse_created


class CachedRegistries:
    """Registry reads for any host, through one client per host and a Redis cache."""

    def __init__(self, conn: Redis | None, settings: ImagesSettings, session=None):
        self.conn = conn
        self.settings = settings
        self.session = session
        self.ttl = max(1, int(settings.cache_ttl))
        self._clients: dict[str, RegistryClient] = {}
        self.reads = 0  # registry round trips made (not counting auth), for tests and logs

    def client(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = RegistryClient(host, self.settings.registry(host), session=self.session)
        return self._clients[host]

    def tags(self, ref: ImageRef) -> list[str]:
        key = keys.image_tags(ref.repository)
        if self.conn is not None:
            cached = self.conn.get(key)
            if cached is not None:
                return json.loads(cached)
        self.reads += 1
        tags = self.client(ref.host).list_tags(ref.name)
        if self.conn is not None:
            self.conn.set(key, json.dumps(tags), ex=self.ttl)
        return tags

    def created(self, ref: ImageRef, tag: str) -> datetime | None:
        return self.tag_info(ref, tag).created

    def tag_info(self, ref: ImageRef, tag: str) -> TagInfo:
        key = keys.image_tag_info(ref.repository)
        if self.conn is not None:
            cached = self.conn.hget(key, tag)
            if cached is not None:
                data = json.loads(cached)
                return TagInfo(digest=data["digest"], created=parse_created(data.get("created")))
        self.reads += 2
        info = self.client(ref.host).tag_info(ref.name, tag)
        if self.conn is not None:
            created = info.created.isoformat().replace("+00:00", "Z") if info.created else None
            with self.conn.pipeline() as pipe:
                pipe.hset(key, tag, json.dumps({"digest": info.digest, "created": created}))
                pipe.expire(key, self.ttl, nx=True)
                pipe.execute()
        return info


def forget(conn: Redis, repository: str) -> None:
    """Drop what is cached for ``host/name`` (a registry said it changed)."""
    conn.delete(keys.image_tags(repository), keys.image_tag_info(repository))
