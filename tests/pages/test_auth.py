"""The operator token rules as pure functions: sessions, expiry, rotation, CSRF tokens, redirects."""

from __future__ import annotations

from pullbridge.config import parse_config
from webhook.pages import auth

CONFIG = parse_config({"server": {"operator_token_env": "PB_TEST_AUTH_TOKEN"}})


def test_a_session_is_not_the_token_and_expires(monkeypatch):
    monkeypatch.setenv("PB_TEST_AUTH_TOKEN", "first-token")
    cookie = auth.new_session(CONFIG, now=1000)
    assert "first-token" not in cookie
    assert auth.session_valid(CONFIG, cookie, now=1000 + auth.SESSION_SECONDS - 1)
    assert not auth.session_valid(CONFIG, cookie, now=1000 + auth.SESSION_SECONDS + 1)
    expires, _, mac = cookie.partition(".")
    assert not auth.session_valid(CONFIG, f"{int(expires) + 3600}.{mac}", now=1000)  # a stretched expiry
    assert not auth.session_valid(CONFIG, "garbage", now=1000)


def test_rotating_the_token_ends_sessions_and_csrf_tokens(monkeypatch):
    monkeypatch.setenv("PB_TEST_AUTH_TOKEN", "first-token")
    cookie = auth.new_session(CONFIG)
    csrf = auth.csrf_token(CONFIG, cookie)
    monkeypatch.setenv("PB_TEST_AUTH_TOKEN", "second-token")
    assert not auth.session_valid(CONFIG, cookie)
    assert auth.csrf_token(CONFIG, cookie) != csrf


def test_no_token_configured_means_no_operator(monkeypatch):
    monkeypatch.delenv("PB_TEST_AUTH_TOKEN", raising=False)
    assert auth.operator_token(CONFIG) is None
    assert not auth.token_matches(CONFIG, "")
    assert not auth.session_valid(CONFIG, "123.abc")
    assert auth.operator_token(parse_config({})) is None
    monkeypatch.setenv("PB_TEST_AUTH_TOKEN", "")
    assert auth.operator_token(CONFIG) is None


def test_only_local_paths_are_followed_after_login():
    assert auth.safe_next("/queue?x=1") == "/queue?x=1"
    for bad in (None, "", "https://evil.example/", "//evil.example/", "/\\evil.example", "queue"):
        assert auth.safe_next(bad) == "/"


def test_control_characters_in_the_login_target_are_refused():
    # browsers drop a tab or newline inside a URL: "/\t/evil.example" would be "//evil.example"
    for bad in ("/\t/evil.example/phish", "/\n/evil.example", "/\r\n/evil.example", "/queue\x00",
                "/\x7f/evil.example", "/\x85/evil.example"):
        assert auth.safe_next(bad) == "/", repr(bad)
    assert auth.safe_next("/syncs/shop-1?tab=changes#error") == "/syncs/shop-1?tab=changes#error"
