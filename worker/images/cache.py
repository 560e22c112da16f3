"""What the registries said, cached in Redis with a TTL.

Why it exists: a scan runs every few minutes for every automated container,
and a registry webhook triggers more; without a cache each scan would list
every tag and read two documents per matching tag.  Tag lists and tag ->
(digest, created) answers are kept for ``images.cache_ttl``, and digest ->
created for a week (a digest's content never changes, so after the TTL one
HEAD request per tag tells whether it still points at a known image).  A
registry notification for an image drops its tag entries so the next scan
sees the new tag at once.
"""

from __future__ import annotations

import json
from datetime import datetime

from redis import Redis

from pullbridge import keys
from pullbridge.image_config import ImagesSettings
from worker.images.registry import ImageRef, RegistryClient, TagInfo, parse_created

DIGEST_TTL = 7 * 86400  # a digest's creation time never changes; kept while it is being read


class CachedRegistries:
    """Registry reads for any host, through one client per host and a Redis cache."""

    def __init__(self, conn: Redis | None, settings: ImagesSettings, session=None, fresh: bool = False):
        self.conn = conn
        self.fresh = fresh  # re-list tags and re-check digests (a registry said something changed)
        self.settings = settings
        self.session = session
        self.ttl = max(1, int(settings.cache_ttl))
        self._clients: dict[str, RegistryClient] = {}
        self._tags: dict[str, list[str]] = {}              # per scan, also without Redis
        self._infos: dict[tuple[str, str], TagInfo] = {}
        self.reads = 0  # registry round trips made (not counting auth), for tests and logs

    def client(self, host: str) -> RegistryClient:
        if host not in self._clients:
            self._clients[host] = RegistryClient(host, self.settings.registry(host), session=self.session)
        return self._clients[host]

    def tags(self, ref: ImageRef) -> list[str]:
        if ref.repository not in self._tags:
            self._tags[ref.repository] = self._read_tags(ref)
        return self._tags[ref.repository]

    def _read_tags(self, ref: ImageRef) -> list[str]:
        key = keys.image_tags(ref.repository)
        if self.conn is not None and not self.fresh:
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
        if (ref.repository, tag) not in self._infos:
            self._infos[(ref.repository, tag)] = self._read_tag_info(ref, tag)
        return self._infos[(ref.repository, tag)]

    def _read_tag_info(self, ref: ImageRef, tag: str) -> TagInfo:
        """Digest and creation time of ``ref``'s ``tag``.

        Cached per tag for ``cache_ttl``; once that expires a HEAD request
        gives the digest, and an unchanged digest is answered from the
        per-digest cache (a digest's content never changes) without reading
        the manifest and config blob again.
        """
        key = keys.image_tag_info(ref.repository)
        if self.conn is not None and not self.fresh:
            cached = self.conn.hget(key, tag)
            if cached is not None:
                data = json.loads(cached)
                return TagInfo(digest=data["digest"], created=parse_created(data.get("created")))
        client = self.client(ref.host)
        info = None
        if self.conn is not None:
            self.reads += 1
            digest = client.digest(ref.name, tag)
            known = self.conn.hget(keys.image_digest_created(ref.repository), digest) if digest else None
            if known is not None:
                info = TagInfo(digest=digest, created=parse_created(known.decode() or None))
        if info is None:
            self.reads += 2
            info = client.tag_info(ref.name, tag)
        if self.conn is not None:
            created = info.created.isoformat().replace("+00:00", "Z") if info.created else ""
            digests = keys.image_digest_created(ref.repository)
            with self.conn.pipeline() as pipe:
                pipe.hset(key, tag, json.dumps({"digest": info.digest, "created": created or None}))
                pipe.expire(key, self.ttl, nx=True)
                pipe.hset(digests, info.digest, created)
                pipe.expire(digests, DIGEST_TTL)
                pipe.execute()
        return info


def forget(conn: Redis, repository: str) -> None:
    """Drop what is cached for ``host/name`` (a registry said it changed); digests stay valid."""
    conn.delete(keys.image_tags(repository), keys.image_tag_info(repository))
