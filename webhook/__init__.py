"""The Flask receiver: verifies git host webhooks and queues syncs.

The app factory lives in ``webhook.factory``; ``webhook.create_app`` (what the
Procfile names) is looked up from there on first use.  This module itself
imports nothing: gunicorn's master imports it on the way to
``webhook.gunicorn_conf``, and each gevent worker must patch the standard
library (sockets, ssl, locks) *before* Flask, redis and ssl are imported.
"""

_FACTORY_NAMES = ("create_app", "make_redis", "register_error_handlers", "DEFAULT_REDIS_URL", "BENCH_NOOP_ENV")


def __getattr__(name: str):
    if name in _FACTORY_NAMES:
        from webhook import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'webhook' has no attribute {name!r}")
