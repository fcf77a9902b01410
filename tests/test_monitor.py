"""Drift monitoring: alert semantics, the PSI, Prometheus gauges, a real webhook, replays of a real store."""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from typer.testing import CliRunner

from frontdesk import ConfigError, Decision, Router, TierTrace
from frontdesk.cli.monitor import register
from frontdesk.loop.drift import (
    Alert,
    Baseline,
    DriftConfig,
    DriftMonitor,
    drift_report,
    is_unknown,
    primary_confidence,
    psi,
    psi_noise,
)
from frontdesk.store.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def dec(label: str = "billing", conf: float = 0.9, *, tier: str = "linear", escalated: bool = False,
        created: datetime | None = None, labels: list[str] | None = None, duplicate_of: str | None = None) -> Decision:
    """A decision whose primary tier ("linear") scored ``conf``."""
    labels = [label] if labels is None else labels
    trace = [TierTrace(tier="linear", kind="linear", verdict="accept" if tier == "linear" else "escalate",
                       labels=labels, confidence=conf)]
    if tier == "human":
        trace.append(TierTrace(tier="human", kind="human", verdict="review", labels=labels, confidence=conf))
    extra = {"created_at": created} if created is not None else {}
    return Decision(text=f"message about {label}", labels=labels, confidence=conf, tier=tier,
                    escalated=escalated or tier == "human", flagged=tier == "human", trace=trace,
                    duplicate_of=duplicate_of, **extra)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def stream(monitor: DriftMonitor, decisions: list[Decision]) -> list[Alert]:
    """Observe each decision and check after each one, as a service with per-decision checks would."""
    events = []
    for d in decisions:
        monitor.observe(d)
        events.extend(monitor.check())
    return events


def unknown_every(k: int, n: int) -> list[Decision]:
    """n decisions, every k-th one 'oos' (an unknown rate of exactly 1/k over any k-aligned stretch)."""
    return [dec("oos" if (i + 1) % k == 0 else random.Random(i).choice("abc")) for i in range(n)]


# -- config --------------------------------------------------------------------------------------
def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        DriftConfig(windw=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="min_window"):
        DriftConfig(window=50)
    with pytest.raises(ValidationError, match="http"):
        DriftConfig(webhook_url="ftp://example.org")
    with pytest.raises(ConfigError, match="drift"):
        DriftConfig.make(window=0)
    assert DriftConfig(window_s=60).window is None  # window_s alone: purely time-based
    assert DriftConfig(window_s=60, window=200).window == 200  # both: whichever is smaller
    d = DriftConfig()
    assert (d.window, d.unknown_rate_alert, d.min_window, d.psi_alert, d.unknown_labels) == (500, 0.03, 100, 0.2, ["oos", "unknown"])


# -- what counts -----------------------------------------------------------------------------------
def test_unknown_and_confidence_definitions() -> None:
    assert is_unknown(dec("oos"))
    assert is_unknown(dec("unknown"))
    assert not is_unknown(dec("billing"))
    assert not is_unknown(dec("billing", tier="human"))  # human review with a best guess: escalated, not unknown
    assert is_unknown(dec("billing", tier="human"), count_human_as_unknown=True)
    assert is_unknown(dec("x", tier="human", labels=[]))  # human review without any label
    assert is_unknown(dec("fallback"), ["fallback"])
    # the primary tier's confidence, not the answering tier's; guardrail rules are skipped
    d = dec("billing", 0.4, tier="human")
    assert primary_confidence(d) == 0.4
    ruled = Decision(text="t", labels=["legal"], confidence=1.0, tier="guardrails", escalated=False, flagged=False,
                     trace=[TierTrace(tier="guardrails", kind="rules", verdict="accept", labels=["legal"], confidence=1.0)])
    assert primary_confidence(ruled) is None
    errored = Decision(text="t", labels=[], confidence=0.0, tier="human", escalated=True, flagged=True,
                       trace=[TierTrace(tier="linear", kind="linear", verdict="error", reason="boom")])
    assert primary_confidence(errored) is None


def test_snapshot_numbers_and_duplicates() -> None:
    m = DriftMonitor(DriftConfig(window=10, min_window=5))
    for i in range(20):  # only the last 10 stay in the window
        m.observe(dec("oos" if i >= 16 else "a", conf=0.5 if i >= 10 else 0.9, escalated=i % 2 == 0))
    m.observe(dec("oos", 0.1, duplicate_of="abc"))  # a duplicate of an earlier decision is not counted
    s = m.snapshot()
    assert (s.observed, s.n) == (20, 10)
    assert s.confidence_mean == pytest.approx(0.5)
    assert s.unknown_rate == pytest.approx(0.4)
    assert s.escalation_rate == pytest.approx(0.5)
    assert s.label_distribution == pytest.approx({"a": 0.6, "oos": 0.4})
    assert s.baseline is not None and s.baseline.n == 10 and s.baseline.confidence_mean == pytest.approx(0.9)


# -- the unknown-rate alert ------------------------------------------------------------------------
def test_unknown_rate_alert_fires_above_threshold_once_and_clears() -> None:
    m = DriftMonitor(DriftConfig(window=500, min_window=100, psi_alert=None), notify=False)
    events = stream(m, unknown_every(20, 400))  # 5 % unknown > 3 %
    assert [(e.kind, e.state) for e in events] == [("unknown_rate", "firing")]  # fires once, not per check
    first = events[0]
    assert first.observed == 100  # not before min_window decisions, then at once
    assert first.value == pytest.approx(0.05) and first.threshold == 0.03
    assert "unknown rate 5.0%" in first.message and "3.0%" in first.message
    assert [a.kind for a in m.active_alerts()] == ["unknown_rate"]
    # the stream turns clean: the alert is reported cleared once, when the rate is back under 3 % × 0.9
    events = stream(m, [dec("a") for _ in range(600)])
    assert [(e.kind, e.state) for e in events] == [("unknown_rate", "cleared")]
    assert events[0].value < 0.027
    assert m.active_alerts() == []
    assert [e.state for e in m.history()] == ["firing", "cleared"]


def test_unknown_rate_alert_silent_below_threshold() -> None:
    m = DriftMonitor(DriftConfig(window=500, min_window=100), notify=False)
    assert stream(m, unknown_every(50, 2000)) == []  # 2 % < 3 %
    assert m.snapshot().unknown_rate == pytest.approx(0.02)
    # exactly 3 % is not "above 3 %"
    m = DriftMonitor(DriftConfig(window=100, min_window=100, psi_alert=None), notify=False)
    events = stream(m, [dec("oos" if i % 100 in (10, 50, 90) else "a") for i in range(1000)])
    assert events == []


def test_unknown_rate_alert_waits_for_min_window() -> None:
    m = DriftMonitor(DriftConfig(window=500, min_window=100), notify=False)
    events = stream(m, [dec("oos") for _ in range(99)])  # 100 % unknown, but only 99 decisions
    assert events == []
    assert m.snapshot().unknown_rate == 1.0
    m.observe(dec("oos"))
    assert [e.kind for e in m.check()] == ["unknown_rate"]


def test_unknown_rate_rise_relative_to_baseline() -> None:
    base = Baseline(label_distribution={"a": 0.8, "oos": 0.2}, unknown_rate=0.2, confidence_mean=0.9, n=3000)
    cfg = DriftConfig(window=500, min_window=100, unknown_rate_alert=None, unknown_rate_rise_alert=0.05, psi_alert=None)
    m = DriftMonitor(cfg, baseline=base, notify=False)
    assert stream(m, unknown_every(5, 1000)) == []  # 20 %: the normal rate of this model
    events = stream(m, unknown_every(4, 500))  # 25 % → +5 points: not above +5
    assert events == []
    events = stream(m, unknown_every(3, 500))  # 33 %
    assert [(e.kind, e.state) for e in events] == [("unknown_rate_rise", "firing")]
    assert "vs 20.0% in the baseline" in events[0].message


def test_escalation_rate_alert() -> None:
    m = DriftMonitor(DriftConfig(window=200, min_window=100, escalation_rate_alert=0.3, unknown_rate_alert=None),
                     notify=False)
    assert stream(m, [dec("a", tier="human" if i % 5 == 0 else "linear") for i in range(300)]) == []  # 20 %
    events = stream(m, [dec("a", tier="human" if i % 2 == 0 else "linear") for i in range(300)])  # 50 %
    assert [(e.kind, e.state) for e in events] == [("escalation_rate", "firing")]


# -- confidence ---------------------------------------------------------------------------------------
def _confidences(n: int, start: float, end: float, seed: int = 0) -> list[Decision]:
    rng = random.Random(seed)
    return [dec(rng.choice("abc"), min(1.0, max(0.0, start + (end - start) * i / (n - 1) + rng.gauss(0, 0.05))))
            for i in range(n)]


def test_confidence_drop_fires_on_downward_trend() -> None:
    base = Baseline(label_distribution={"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, confidence_mean=0.9, unknown_rate=0.0, n=3000)
    m = DriftMonitor(DriftConfig(window=200, min_window=100, confidence_slope_alert=0.01), baseline=base, notify=False)
    events = stream(m, _confidences(3000, 0.9, 0.7))
    kinds = [(e.kind, e.state) for e in events]
    assert ("confidence_drop", "firing") in kinds and ("confidence_trend", "firing") in kinds
    drop = next(e for e in events if e.kind == "confidence_drop")
    # the window mean lags the trend: 0.05 below 0.9 is reached past the first quarter of the stream
    assert 750 <= drop.observed <= 1500
    assert drop.value >= 0.05 and "consider retraining" in drop.message
    s = m.snapshot()
    assert s.confidence_trend is not None and s.confidence_trend < -0.005  # per 200-decision window
    assert len(s.trend_points) == 5 and s.trend_points == sorted(s.trend_points, reverse=True)


def test_confidence_stable_stream_no_alert() -> None:
    m = DriftMonitor(DriftConfig(window=200, min_window=100, confidence_slope_alert=0.01), notify=False)
    assert stream(m, _confidences(3000, 0.88, 0.88)) == []  # baseline = the first window
    s = m.snapshot()
    assert abs(s.confidence_trend) < 0.01  # type: ignore[arg-type]
    assert s.baseline is not None and s.baseline.source == "first 200 decisions observed"


# -- PSI -------------------------------------------------------------------------------------------------
def _labels(weights: dict[str, float], n: int, seed: int) -> list[Decision]:
    rng = random.Random(seed)
    names, w = list(weights), list(weights.values())
    return [dec(rng.choices(names, w)[0]) for _ in range(n)]


def test_psi_alert_on_shifted_label_distribution() -> None:
    uniform = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}
    base = Baseline.from_decisions(_labels(uniform, 3000, 1))
    cfg = DriftConfig(window=500, min_window=100, unknown_rate_alert=None)
    m = DriftMonitor(cfg, baseline=base, notify=False)
    assert stream(m, _labels(uniform, 1500, 2)) == []
    assert m.snapshot().psi < 0.05  # type: ignore[operator]
    events = stream(m, _labels({"a": 0.7, "b": 0.1, "c": 0.1, "d": 0.1}, 1000, 3))
    assert [(e.kind, e.state) for e in events] == [("psi", "firing")]
    s = m.snapshot()
    assert s.psi > 0.4 and s.top_shifts[0].label == "a"  # type: ignore[operator]
    assert "largest shifts: a 2" in events[0].message


def test_psi_noise_correction_with_many_labels() -> None:
    """150 labels and a 500-decision window: the raw PSI of an unchanged distribution is ≈ 0.3 > 0.2."""
    labels = {f"intent_{i}": 1.0 for i in range(150)}
    base = Baseline.from_decisions(_labels(labels, 3000, 1))
    raw = DriftMonitor(DriftConfig(unknown_rate_alert=None, psi_noise_correction=False), baseline=base, notify=False)
    corrected = DriftMonitor(DriftConfig(unknown_rate_alert=None), baseline=base, notify=False)
    same = _labels(labels, 1000, 2)
    assert [e.kind for e in stream(raw, same)] == ["psi"]  # a false alarm without the correction
    assert stream(corrected, same) == []
    s = corrected.snapshot()
    assert 0.2 < s.psi < 0.45 and s.psi_noise == pytest.approx(s.psi, abs=0.08)  # type: ignore[operator]
    # a real shift still fires: 40 labels vanish, their traffic goes to the unknown label
    shifted = {**{f"intent_{i}": 1.0 for i in range(40, 150)}, "oos": 40.0}
    assert [e.kind for e in stream(corrected, _labels(shifted, 1000, 3))] == ["psi"]


def test_psi_function() -> None:
    value, terms = psi([50, 50], [0.5, 0.5], n=100, m=1000)
    assert value == pytest.approx(0.0, abs=1e-9) and len(terms) == 2
    value, _ = psi([90, 10], [0.5, 0.5], n=100, m=1000)
    assert value == pytest.approx(0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(0.5 / 0.1), abs=0.05)  # smoothing: a bit less
    assert psi_noise([0.5, 0.5], n=500, m=500) == pytest.approx(1 * (1 / 500 + 1 / 500), rel=0.5)


# -- recall from feedback ---------------------------------------------------------------------------------
def test_per_label_recall_from_feedback() -> None:
    m = DriftMonitor(DriftConfig(recall_window=10))
    for _ in range(3):
        m.observe_feedback(dec("billing"), ["billing"])
    m.observe_feedback(dec("refund"), ["billing"])
    m.observe_feedback(dec("billing", tier="human"), ["billing"])  # human review is not a model answer
    s = m.snapshot()
    assert s.recall["billing"].support == 5 and s.recall["billing"].recall == pytest.approx(0.6)
    assert "refund" not in s.recall
    for _ in range(10):  # the window keeps the last 10
        m.observe_feedback(dec("refund"), ["refund"])
    s = m.snapshot()
    assert "billing" not in s.recall and s.recall["refund"].recall == 1.0 and s.feedback_n == 10


# -- time windows, threads -------------------------------------------------------------------------------
def test_time_window_with_clock() -> None:
    clock = FakeClock()
    m = DriftMonitor(DriftConfig(window_s=60, min_window=5), clock=clock)
    for _ in range(10):
        m.observe(dec("oos"))
        clock.t += 1
    assert m.snapshot().n == 10
    clock.t += 120  # everything is older than a minute now
    assert m.snapshot().n == 0
    m.observe(dec("a"))
    assert m.snapshot().n == 1 and m.snapshot().unknown_rate == 0.0


def test_observe_is_thread_safe() -> None:
    m = DriftMonitor(DriftConfig(window=100_000, min_window=10))
    def work(seed: int) -> None:
        for d in unknown_every(10, 2000):
            m.observe(d)
        m.check()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = m.snapshot()
    assert s.observed == s.n == 8000
    assert s.unknown_rate == pytest.approx(0.1)
    assert sum(s.label_distribution.values()) == pytest.approx(1.0)


def test_background_checker_logs(caplog: pytest.LogCaptureFixture) -> None:
    m = DriftMonitor(DriftConfig(window=100, min_window=100))
    for _ in range(100):
        m.observe(dec("oos"))
    with caplog.at_level(logging.WARNING, logger="frontdesk.loop.drift"):
        m.start(interval_s=0.02)
        deadline = threading.Event()
        for _ in range(200):
            if m.active_alerts():
                break
            deadline.wait(0.02)
        m.close()
    assert [a.kind for a in m.active_alerts()] == ["unknown_rate"]
    assert any("drift alert unknown_rate firing" in r.getMessage() for r in caplog.records)


def test_reset_starts_over() -> None:
    m = DriftMonitor(DriftConfig(window=100, min_window=100), notify=False)
    stream(m, [dec("oos") for _ in range(100)])
    assert m.active_alerts()
    m.reset(labels=["a", "b"])
    s = m.snapshot()
    assert (s.observed, s.n, s.active_alerts, s.baseline) == (0, 0, [], None)


# -- delivery: Prometheus, webhook -----------------------------------------------------------------------------
def test_prometheus_gauges_in_registry() -> None:
    registry = CollectorRegistry()
    m = DriftMonitor(DriftConfig(window=200, min_window=100, escalation_rate_alert=0.5), labels=["a", "b", "c"])
    m.register(registry)
    text = generate_latest(registry).decode()
    for name in ("frontdesk_drift_confidence_mean", "frontdesk_drift_unknown_rate", "frontdesk_drift_escalation_rate",
                 "frontdesk_drift_psi", "frontdesk_drift_confidence_trend", "frontdesk_drift_window_decisions"):
        assert f"# TYPE {name} gauge" in text
    assert "frontdesk_drift_unknown_rate NaN" in text  # nothing observed yet
    assert 'frontdesk_drift_alerts_active{kind="unknown_rate"} 0.0' in text
    assert 'frontdesk_drift_alerts_active{kind="escalation_rate"} 0.0' in text
    assert 'kind="unknown_rate_rise"' not in text  # not configured
    stream(m, unknown_every(10, 200))
    text = generate_latest(registry).decode()
    assert "frontdesk_drift_unknown_rate 0.1" in text
    assert "frontdesk_drift_confidence_mean 0.9" in text
    assert "frontdesk_drift_window_decisions 200.0" in text
    assert 'frontdesk_drift_alerts_active{kind="unknown_rate"} 1.0' in text
    with pytest.raises(ConfigError, match="already registered"):
        DriftMonitor().register(registry)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"body": json.loads(body), "content_type": self.headers["Content-Type"]})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/drift", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_receives_alerts(receiver: tuple[str, list[dict]], caplog: pytest.LogCaptureFixture) -> None:
    url, received = receiver
    m = DriftMonitor(DriftConfig(window=100, min_window=100, webhook_url=url, psi_alert=None))
    with caplog.at_level(logging.WARNING, logger="frontdesk.loop.drift"):
        stream(m, [dec("oos" if i % 10 == 0 else "a") for i in range(100)])  # 10 % → fires
        stream(m, [dec("a") for _ in range(100)])  # clears
    assert [r["body"]["alert"]["state"] for r in received] == ["firing", "cleared"]
    first = received[0]
    assert first["content_type"] == "application/json"
    assert first["body"]["source"] == "frontdesk" and first["body"]["type"] == "drift_alert"
    alert = first["body"]["alert"]
    assert alert["kind"] == "unknown_rate" and alert["value"] == pytest.approx(0.1) and alert["threshold"] == 0.03
    assert alert["observed"] == 100 and "10.0%" in alert["message"]
    datetime.fromisoformat(alert["at"])
    assert sum("drift alert unknown_rate" in r.getMessage() for r in caplog.records) == 2  # also logged


def test_webhook_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = DriftMonitor(DriftConfig(window=100, min_window=100, webhook_url=f"http://127.0.0.1:{port}/", webhook_timeout_s=0.5))
    for _ in range(100):
        m.observe(dec("oos"))
    with caplog.at_level(logging.WARNING, logger="frontdesk.loop.drift"):
        events = m.check()
    assert [e.kind for e in events] == ["unknown_rate"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "drift webhook" in errors[0].getMessage() and "still logged" in errors[0].getMessage()


# -- baselines from a model ---------------------------------------------------------------------------------------
def test_from_router_baseline_from_validation(router: Router, support) -> None:  # noqa: ANN001
    texts = [ex.text for ex in support.validation]
    m = DriftMonitor.from_router(router, DriftConfig(window=100, min_window=20), baseline_texts=texts)
    assert m.baseline is not None and m.baseline.n == len(texts) and m.baseline.source.startswith("validation")
    assert m.primary_tier == router.primary.name
    assert 0.5 < m.baseline.confidence_mean <= 1.0  # type: ignore[operator]
    assert set(m.baseline.label_distribution) <= set(router.labels)
    # routing the validation data again: no alert
    for d in router.route_batch(texts):
        m.observe(d)
    assert [e.kind for e in m.check()] == []
    assert m.snapshot().psi_noise is not None


# -- replaying a real SQLite store -------------------------------------------------------------------------------
def _fill(store: Store, n: int = 600, new_from: int = 300) -> list[Decision]:
    """n decisions a minute apart; from new_from on, every 5th one is 'oos' (a new intent appears)."""
    out = []
    rng = random.Random(0)
    for i in range(n):
        label = "oos" if i >= new_from and i % 5 == 0 else rng.choice(["billing", "refund", "shipping"])
        out.append(dec(label, 0.6 if label == "oos" else 0.9, created=T0 + timedelta(minutes=i)))
    store.save_decisions(out)
    return out


def test_drift_report_replays_sqlite_store(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'fd.db'}") as store:
        decisions = _fill(store)
        store.add_feedback(decisions[10].id, ["billing"])
        store.add_feedback(decisions[300].id, ["gift_wrapping"])
        report = drift_report(store, config=DriftConfig(window=200, min_window=100))
    assert report.decisions == 600 and report.feedback == 2
    fired = [a for a in report.alerts if a.state == "firing"]
    unknown = next(a for a in fired if a.kind == "unknown_rate")
    # the new intent starts at decision #301 (every 5th 'oos'); the 7th unknown in the window (#331) is the first
    # rate above 3 % (6 of 200 is exactly 3 %)
    assert unknown.observed == 331
    assert unknown.at == T0 + timedelta(minutes=unknown.observed - 1)  # replay time is the decision's time
    assert all(a.observed > 300 for a in report.alerts)  # nothing before
    assert {a.kind for a in report.active} >= {"unknown_rate", "confidence_drop", "psi"}
    s = report.snapshot
    assert s.unknown_rate == pytest.approx(0.2) and s.baseline is not None and s.baseline.source == "first 200 decisions observed"
    assert s.recall["gift_wrapping"].recall == 0.0 and s.recall["billing"].support == 1
    # --since replays only the later part: its own first window is the baseline, which already has the new intent
    with Store(f"sqlite:///{tmp_path / 'fd.db'}") as store:
        later = drift_report(store, since=T0 + timedelta(minutes=400), config=DriftConfig(window=100, min_window=100,
                                                                                             unknown_rate_alert=None))
    assert later.decisions == 200 and later.since is not None
    assert not [a for a in later.alerts if a.kind in ("psi", "confidence_drop")]


def test_drift_report_empty_store(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        report = drift_report(store)
    assert report.decisions == 0 and report.alerts == [] and report.snapshot.n == 0


# -- the CLI command --------------------------------------------------------------------------------------------------
@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_drift(cli: typer.Typer, tmp_path: Path) -> None:
    db = tmp_path / "fd.db"
    with Store(f"sqlite:///{db}") as store:
        _fill(store)
    runner = CliRunner()
    result = runner.invoke(cli, ["drift", "--store", f"sqlite:///{db}", "--window", "200", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["decisions"] == 600 and data["snapshot"]["n"] == 200
    assert any(a["kind"] == "unknown_rate" and a["state"] == "firing" for a in data["alerts"])
    result = runner.invoke(cli, ["drift", "--store", str(db), "--window", "200"])  # a bare path works too
    assert result.exit_code == 0, result.output
    assert "unknown rate" in result.output and "firing" in result.output and "alert transitions" in result.output
    result = runner.invoke(cli, ["drift", "--store", f"sqlite:///{db}", "--since", "2025-03-01T21:00:00Z"])
    assert result.exit_code == 0 and "of 60 decisions" in result.output


def test_cli_drift_errors(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["drift", "--store", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert isinstance(result.exception, ConfigError) and "no database at" in str(result.exception)
    assert not (tmp_path / "nope.db").exists()  # not created by looking
    with Store(f"sqlite:///{tmp_path / 'fd.db'}"):
        pass
    result = runner.invoke(cli, ["drift", "--store", f"sqlite:///{tmp_path / 'fd.db'}", "--since", "yesterday"])
    assert isinstance(result.exception, ConfigError) and "ISO 8601" in str(result.exception)
    result = runner.invoke(cli, ["drift", "--store", f"sqlite:///{tmp_path / 'fd.db'}"])
    assert result.exit_code == 0 and "nothing to report" in result.output
