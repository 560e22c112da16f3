"""The registry client against a real docker-registry: pagination, indexes, basic and
bearer-token auth, and the Redis cache."""

from datetime import datetime, timezone

import pytest

from pullbridge.image_config import ImagesSettings, RegistryConfig
from worker.images import registry as registry_mod
from worker.images.cache import CachedRegistries, forget
from tests.images.registry_harness import PaginatingFront
from worker.images.registry import ImageRef, RegistryClient, RegistryError, parse_challenge, parse_created

CREATED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_image_ref_parsing_and_retagging():
    ref = ImageRef.parse("docker.io/weaveworks/fluxdemo:develop-v1.8.0")
    assert (ref.host, ref.name, ref.tag, ref.repository) == ("docker.io", "weaveworks/fluxdemo", "develop-v1.8.0",
                                                             "docker.io/weaveworks/fluxdemo")
    assert ref.with_tag("develop-v1.9.0") == "docker.io/weaveworks/fluxdemo:develop-v1.9.0"
    nginx = ImageRef.parse("nginx:1.27")
    assert (nginx.host, nginx.name) == ("docker.io", "library/nginx")
    assert nginx.with_tag("1.28") == "nginx:1.28"
    legacy = ImageRef.parse("index.docker.io/nginx:1.27")  # Docker Hub's old name: its credentials, its tags
    assert (legacy.host, legacy.repository) == ("docker.io", "docker.io/library/nginx")
    assert legacy.with_tag("1.28") == "index.docker.io/nginx:1.28"
    local = ImageRef.parse("127.0.0.1:5000/a/b")
    assert (local.host, local.name, local.tag) == ("127.0.0.1:5000", "a/b", None)
    assert local.with_tag("v2") == "127.0.0.1:5000/a/b:v2"
    assert ImageRef.parse("localhost/x@sha256:" + "a" * 64).digest == "sha256:" + "a" * 64
    with pytest.raises(ValueError):
        ImageRef.parse("Bad Image")


def test_challenge_and_timestamps():
    scheme, params = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                     'scope="repository:library/nginx:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/nginx:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    assert parse_created("2026-03-01T12:00:00.123456789Z") == datetime(2026, 3, 1, 12, 0, 0, 123456,
                                                                       tzinfo=timezone.utc)
    assert parse_created("2026-03-01T14:00:00+02:00") == CREATED
    assert parse_created("") is None and parse_created("yesterday") is None


def test_tags_are_listed_across_pages(registry, image_name, monkeypatch):
    """Link-following, against a front that pages the real registry's answer (v2.8 does not page)."""
    tags = [f"v1.{i}.0" for i in range(7)]
    for tag in tags:
        registry.push_image(image_name, tag, CREATED)
    front = PaginatingFront(registry)
    try:
        monkeypatch.setattr(registry_mod, "PAGE_SIZE", 2)
        client = RegistryClient(front.host, RegistryConfig(host=front.host, insecure=True))
        assert client.list_tags(image_name) == sorted(tags)
        assert front.pages_served == 4
    finally:
        front.stop()


def test_index_resolves_to_linux_amd64_and_its_created_time(registry, image_name):
    registry.push_image(image_name, "multi", CREATED, index=True)
    info = RegistryClient(registry.host, RegistryConfig(host=registry.host, insecure=True)).tag_info(image_name,
                                                                                                     "multi")
    assert info.created == CREATED  # the arm64 entry (listed first) was created in 2099


def test_docker_schema2_manifest(registry, image_name):
    registry.push_image(image_name, "docker", CREATED, docker=True)
    client = RegistryClient(registry.host, RegistryConfig(host=registry.host, insecure=True))
    digest, manifest = client.manifest(image_name, "docker")
    assert manifest["mediaType"] == registry_mod.DOCKER_MANIFEST and digest.startswith("sha256:")
    assert client.tag_info(image_name, "docker").created == CREATED


def test_missing_repository_is_an_error(registry):
    client = RegistryClient(registry.host, RegistryConfig(host=registry.host, insecure=True))
    with pytest.raises(RegistryError) as err:
        client.list_tags("no/such-image")
    assert "404" in str(err.value) and not err.value.temporary


def _settings_with_credentials(monkeypatch, reg, name="REG") -> RegistryConfig:
    monkeypatch.setenv(f"{name}_USER", reg.push_auth[0])
    monkeypatch.setenv(f"{name}_PASSWORD", reg.push_auth[1])
    return RegistryConfig(host=reg.host, insecure=True, username_env=f"{name}_USER",
                          password_env=f"{name}_PASSWORD")


def test_basic_auth_against_htpasswd(basic_registry, image_name, monkeypatch):
    basic_registry.push_image(image_name, "v1", CREATED)
    anonymous = RegistryClient(basic_registry.host, RegistryConfig(host=basic_registry.host, insecure=True))
    with pytest.raises(RegistryError) as err:
        anonymous.list_tags(image_name)
    assert str(err.value) == (f"{basic_registry.host}: 401 reading http://{basic_registry.host}/v2/{image_name}"
                              f"/tags/list: the registry wants credentials and none are configured for "
                              f"{basic_registry.host} (images.registries: username_env with password_env or "
                              "password_file)")
    assert not err.value.temporary
    settings = _settings_with_credentials(monkeypatch, basic_registry)
    client = RegistryClient(basic_registry.host, settings)
    assert client.list_tags(image_name) == ["v1"]
    assert client.tag_info(image_name, "v1").created == CREATED
    monkeypatch.setenv("REG_PASSWORD", "wrong")
    with pytest.raises(RegistryError) as err:
        RegistryClient(basic_registry.host, settings).list_tags(image_name)
    assert "wrong" not in str(err.value)
    assert str(err.value).endswith(": the registry refused the credentials of $REG_USER")


def test_bearer_token_handshake(token_registry, image_name, monkeypatch):
    token_registry.push_image(image_name, "v1", CREATED)
    server = token_registry.token
    server.requests.clear()
    client = RegistryClient(token_registry.host, _settings_with_credentials(monkeypatch, token_registry, "TOK"))
    assert client.list_tags(image_name) == ["v1"]
    info = client.tag_info(image_name, "v1")
    assert info.created == CREATED and client.digest(image_name, "v1") == info.digest
    # one token for the repository's pull scope, reused for the tag list, manifest and blob
    assert len(server.requests) == 1 and server.requests[0]["authorized"]
    assert server.requests[0]["query"]["scope"] == [f"repository:{image_name}:pull"]
    assert server.requests[0]["query"]["service"] == [server.service]
    monkeypatch.setenv("TOK_PASSWORD", "wrong")
    with pytest.raises(RegistryError) as err:
        RegistryClient(token_registry.host, client.settings).list_tags(image_name)
    assert str(err.value) == (f"{token_registry.host}: token endpoint answered 401: "
                              "the registry refused the credentials of $TOK_USER")


def test_cache_keeps_answers_until_forgotten(registry, image_name, redis_conn):
    registry.push_image(image_name, "v1", CREATED)
    settings = ImagesSettings(registries=[RegistryConfig(host=registry.host, insecure=True)], cache_ttl="5m")
    ref = ImageRef.parse(f"{registry.host}/{image_name}:v1")
    first = CachedRegistries(redis_conn, settings)
    assert first.tags(ref) == ["v1"] and first.created(ref, "v1") == CREATED
    assert first.reads == 4  # tag list, HEAD, manifest, config blob
    registry.push_image(image_name, "v2", CREATED)
    second = CachedRegistries(redis_conn, settings)
    assert second.tags(ref) == ["v1"] and second.created(ref, "v1") == CREATED and second.reads == 0
    assert 0 < redis_conn.ttl(f"pb:img:{ref.repository}:tags") <= 300
    forget(redis_conn, ref.repository)
    third = CachedRegistries(redis_conn, settings)
    assert sorted(third.tags(ref)) == ["v1", "v2"]
    assert third.created(ref, "v1") == CREATED and third.reads == 2  # tag list + HEAD: digest known
    assert third.created(ref, "v2") == CREATED and third.reads == 5
    # a notified scan re-lists tags and re-checks digests even before the TTL ran out
    registry.push_image(image_name, "v3", CREATED)
    fresh = CachedRegistries(redis_conn, settings, fresh=True)
    assert sorted(fresh.tags(ref)) == ["v1", "v2", "v3"] and fresh.created(ref, "v1") == CREATED
    assert fresh.reads == 2
