"""``webhook.metrics``: deliveries tallied in the process and flushed later
end up as the very samples observing them one by one gives."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from webhook import metrics


def samples(histogram, provider):
    return {(s.name, s.labels.get("le")): s.value
            for metric in histogram.collect() for s in metric.samples
            if s.labels.get("provider") == provider and not s.name.endswith("_created")}


def delivered(provider, outcome):
    return metrics.DELIVERIES.labels(provider, outcome)._value.get()


@pytest.fixture
def flusher():
    metrics.start_flusher()
    yield
    metrics.stop_flusher()


def test_tallied_deliveries_equal_observing_each(monkeypatch):
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)  # nothing flushes but us
    metrics.start_flusher()
    try:
        check_tally_equals_observing_each()
    finally:
        metrics.stop_flusher()


def check_tally_equals_observing_each():
    reference = Histogram("reference_intake_seconds", "", ["provider"], buckets=metrics.INTAKE_BUCKETS,
                          registry=CollectorRegistry())
    rng = random.Random(7)
    times = [rng.choice(metrics.INTAKE_BUCKETS) for _ in range(50)]  # bounds themselves: le is inclusive
    times += [rng.uniform(0, 3.0) for _ in range(200)] + [0.0, 99.0]
    before_queued = delivered("tally-test", "queued")
    before = samples(metrics.INTAKE_SECONDS, "tally-test")
    for seconds in times:
        metrics.observe("tally-test", "queued", seconds)
        reference.labels("tally-test").observe(seconds)
    assert delivered("tally-test", "queued") == before_queued  # tallied, not added yet
    metrics.flush()
    assert delivered("tally-test", "queued") - before_queued == len(times)
    got = samples(metrics.INTAKE_SECONDS, "tally-test")
    want = samples(reference, "tally-test")
    for (name, le), value in want.items():
        ours = got[(name.replace("reference_", "pullbridge_webhook_"), le)]
        previous = before.get((name.replace("reference_", "pullbridge_webhook_"), le), 0.0)
        assert ours - previous == pytest.approx(value), (name, le)


def test_without_a_flusher_every_delivery_is_added_at_once():
    before = delivered("tally-test", "unauthorized")
    metrics.observe("tally-test", "unauthorized", 0.0001)
    assert delivered("tally-test", "unauthorized") == before + 1


def test_the_flusher_adds_the_tally_by_itself(flusher):
    before = delivered("tally-test", "ignored")
    metrics.observe("tally-test", "ignored", 0.002)
    for _ in range(400):
        if delivered("tally-test", "ignored") == before + 1:
            break
        metrics._tally.stopping.wait(0.01)
    assert delivered("tally-test", "ignored") == before + 1


def test_stopping_the_flusher_adds_what_is_left(monkeypatch):
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    metrics.start_flusher()
    before = delivered("tally-test", "coalesced")
    metrics.observe("tally-test", "coalesced", 0.002)
    metrics.stop_flusher()
    assert delivered("tally-test", "coalesced") == before + 1


def test_the_help_of_the_deliveries_counter_names_every_outcome():
    from webhook import errors

    def codes(cls):
        return {cls.code}.union(*(codes(sub) for sub in cls.__subclasses__()))

    text = metrics.DELIVERIES._documentation
    answered = {"queued", "coalesced", "duplicate", "ignored", "ping"}  # webhook.intake's answers
    assert [outcome for outcome in sorted(answered | codes(errors.HookError)) if outcome not in text] == []


def test_an_answer_later_than_the_git_hosts_wait_is_told_apart():
    """GitHub and GitLab wait 10 s for an answer; server.queue_timeout (5 s by default, under 10 s)
    ends a push's wait on Redis.  A 3 s answer, a 7 s one (past the default queue_timeout) and
    a 12 s one (the host gave up) fall in different buckets."""
    before = samples(metrics.INTAKE_SECONDS, "slow-test")
    for seconds in (3.0, 7.0, 12.0):
        metrics.observe("slow-test", "unavailable", seconds)
    after = samples(metrics.INTAKE_SECONDS, "slow-test")
    added = {le: after[("pullbridge_webhook_intake_seconds_bucket", le)]
             - before.get(("pullbridge_webhook_intake_seconds_bucket", le), 0.0)
             for le in ("2.5", "5.0", "10.0", "+Inf") if ("pullbridge_webhook_intake_seconds_bucket", le) in after}
    assert added == {"2.5": 0, "5.0": 1, "10.0": 2, "+Inf": 3}
