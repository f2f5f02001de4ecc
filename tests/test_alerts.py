import pytest

from agent.alerts import AlertPolicy, RateLimiter, RepeatFilter
from agent.config import AlertConfig, AlertRule

pytestmark = pytest.mark.unit

LABELS = ["normal", "thermal", "security"]


def test_policy_thresholds_and_anomaly():
    cfg = AlertConfig(default_min_score=0.8, rules=[AlertRule(label="security", min_score=0.5)],
                      anomaly_threshold=0.9)
    p = AlertPolicy.build(cfg, LABELS, "normal")
    assert p.decide("normal", 0.99, 0.01) is None
    assert p.decide("thermal", 0.79, 0.5) is None
    assert "thermal" in (p.decide("thermal", 0.85, 0.5) or "")
    assert "security" in (p.decide("security", 0.55, 0.5) or "")
    assert "anomaly" in (p.decide("normal", 0.4, 0.95) or "")


def test_rate_limiter_refills():
    r = RateLimiter(60)
    now = r.last
    assert sum(r.allow(now) for _ in range(100)) == 60
    assert not r.allow(now)
    assert r.allow(now + 1.01)


def test_repeat_filter_groups_and_counts():
    f = RepeatFilter(10.0)
    assert f.admit("auth", "security", 0.0) == (True, 0)
    for t in range(1, 6):
        assert f.admit("auth", "security", float(t)) == (False, 0)
    assert f.admit("auth", "thermal", 2.0) == (True, 0)  # other label: its own group
    assert f.admit("kern", "security", 2.0) == (True, 0)  # other source too
    assert f.admit("auth", "security", 10.5) == (True, 5)
    assert f.admit("auth", "security", 30.0) == (True, 0)


def test_repeat_filter_groups_per_uid():
    """An ordinary user's line first in the window does not absorb root's alerts."""
    f = RepeatFilter(10.0)
    assert f.admit("journal", "security", 0.0, 1000) == (True, 0)
    assert f.admit("journal", "security", 1.0, 0) == (True, 0)
    assert f.admit("journal", "security", 2.0, 0) == (False, 0)
    assert f.admit("journal", "security", 3.0, None) == (True, 0)  # a file: no uid known
    assert f.admit("journal", "security", 11.5, 0) == (True, 1)


def test_repeat_filter_off_and_bounded():
    assert RepeatFilter(0).admit("a", "b", 0.0) == (True, 0)
    f = RepeatFilter(60.0, max_keys=3)
    for i in range(10):
        assert f.admit(f"s{i}", "x", float(i))[0]
    assert len(f._last) == 3


def test_alert_gate_groups_repeats_then_caps_the_rate() -> None:
    """The gate: policy first, then the repeat filter, then the rate limit; what it holds
    back is counted under its reason."""
    import time

    from agent.alerts import AlertGate
    from agent.config import AlertConfig
    from agent.metrics import Counters

    t0 = time.monotonic()  # the limiter starts from the monotonic clock
    counters = Counters()
    gate = AlertGate(AlertConfig(max_per_minute=2, repeat_window_s=10.0), counters)
    policy = AlertPolicy.build(gate.cfg, ["normal", "storage"], "normal")

    def admit(source: str, label: str, score: float, anomaly: float, at: float):
        return gate.admit(policy, source, label, score, anomaly, now=t0 + at,
                          text="disk sda: I/O error", wall=1e9 + at)

    assert admit("f", "normal", 0.99, 0.01, 0) is None  # no alert
    first = admit("f", "storage", 0.9, 0.9, 0)
    assert first is not None and first.repeats == 0
    assert admit("f", "storage", 0.9, 0.9, 1) is None  # grouped
    assert admit("g", "storage", 0.9, 0.9, 1) is not None
    assert admit("h", "storage", 0.9, 0.9, 1) is None  # over the rate
    later = admit("f", "storage", 0.9, 0.9, 100)
    assert later is not None and later.repeats == 1  # the held-back repeat is reported
    counts, _ = counters.snapshot()
    assert counts["alerts_grouped"] == 1 and counts["alerts_suppressed"] == 1
