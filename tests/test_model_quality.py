"""What the shipped default model must get right on realistic lines: healthy chatter of
many daemons is confidently normal, sensor readings follow the status-word rule, and the
corpus keeps its held-out styles out of training."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from agent.model import LoadedModel
from nanomodel import default_bundle_path
from nanomodel.baseline import KeywordBaseline
from nanomodel.corpus import HELDOUT_STYLES, TRAIN_STYLES, generate
from nanomodel.readings import STATUS_WORDS, make_reading, mqtt_kv
from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES, STATE_LINES, TUNING_LINES

# Informational lines as devices really write them (the demo's pump controller among them).
NORMAL_LINES = [
    "Nov 28 09:00:02 pump-07 pumpd[412]: controller ready, firmware 4.2.1, mode=auto",
    "Nov 28 09:00:09 pump-07 pumpd[412]: cycle 118 complete, flow=41.2 l/min, pressure=3.1 bar",
    "Nov 28 09:00:02 pump-07 pumpd[412]: starting, version 4.2.1 (build 8812)",
    "Nov 28 09:00:01 pump-07 systemd[1]: Started Pump controller service.",
    "Nov 28 09:01:00 pump-07 systemd[1]: Stopped Pump controller service.",
    "Jan 12 07:14:22 gw-03 systemd[1]: Reached target Multi-User System.",
    "Jan 12 06:00:04 gw-03 systemd[1]: apt-daily-upgrade.service: Succeeded.",
    "Jan 12 07:17:01 gw-03 CRON[2211]: (root) CMD (   cd / && run-parts --report "
    "/etc/cron.hourly)",
    "Jan 12 07:17:01 gw-03 CRON[2211]: pam_unix(cron:session): session closed for user root",
    "Jan 12 07:20:01 gw-03 dhclient[611]: DHCPREQUEST for 192.168.1.50 on eth0 to 192.168.1.1 "
    "port 67",
    "Jan 12 07:20:01 gw-03 dhclient[611]: bound to 192.168.1.50 -- renewal in 1720 seconds.",
    "Jan 12 07:20:03 gw-03 systemd-timesyncd[402]: Initial synchronization to time server "
    "10.0.0.1:123 (ntp.ubuntu.com).",
    "Jan 12 07:20:03 gw-03 chronyd[402]: Selected source 10.0.0.1 (2.debian.pool.ntp.org)",
    "Jan 12 08:21:00 gw-03 sshd[1200]: Accepted publickey for pi from 10.0.0.7 port 51234 ssh2: "
    "RSA SHA256:x1Yq8c",
    "Jan 12 08:21:05 gw-03 sshd[1200]: Disconnected from user pi 10.0.0.7 port 51234",
    "Jan 12 00:00:01 gw-03 logrotate[3001]: rotating log /var/log/syslog, log->rotateCount is 7",
    "Jan 12 06:25:02 gw-03 apt[3301]: Setting up libssl3:arm64 (3.0.11-1) ...",
    "[    2.113402] Booting Linux on physical CPU 0x0000000000 [0x410fd034]",
    "sensors/pump-07/pump: temp_c=41.5 humidity=38 vib_rms=0.12 status=ok",
    "sensors/pump-07/pump: temp_c=93.2 humidity=37 vib_rms=0.13 status=ok",  # value alone: ok
    'sensors/meter-4/energy: {"v":230.1,"a":1.2,"kwh":1532.2,"status":"ok"}',
    "sensors/tank-3/level: level_cm=122 temp_c=14.1",
]

# Readings with an explicit alarm status word or flag, and the category the rule gives them.
ALARM_READINGS = [
    ("sensors/pump-07/pump: temp_c=93.2 humidity=37 vib_rms=0.13 status=overheat", "thermal"),
    ("sensors/pump-07/pump: temp_c=95.5 humidity=38 status=over_temp", "thermal"),
    ("sensors/pump-07/pump: temp_c=41.9 humidity=39 vib_rms=2.91 status=vibration_alarm",
     "hardware"),
    ("sensors/node-12/batt: batt_v=3.21 rssi=-88 status=low_battery", "power"),
    ("sensors/tank-3/level: level_cm=12 status=leak", "hardware"),
    ("sensors/pump-02/pump: temp_c=41.0 humidity=38 status=fault", "sensor"),
    ("sensors/pump-02/pump: temp_c=41.0 humidity=38 status=error", "sensor"),
    ("sensors/gate-1/enclosure: door=closed status=tamper", "security"),
    ('sensors/pump-07/pump: {"temp_c":41.5,"status":"overheat"}', "thermal"),
    ("sensors/node-14/env: temp_c=22.1 humidity=45 batt_v=2.95 low_batt=true", "power"),
    ("temp_c=41.5 humidity=38 vib_rms=0.12 status=vibration_alarm", "hardware"),
]


@pytest.fixture(scope="module", params=["onnxruntime", "litert"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return LoadedModel.load(default_bundle_path(), request.param)


def test_informational_lines_are_confidently_normal(model: LoadedModel) -> None:
    """None is flagged, and most are confidently normal. (Trained on real daemons' text
    since issue 9, the model is less sure of a few generated-looking lines than the
    corpus-only one was: systemd's `Reached target` 0.58, cron's `CMD` 0.76.)"""
    probs, anomaly = model.classify(NORMAL_LINES)
    normal = model.labels.index("normal")
    for text, p, a in zip(NORMAL_LINES, probs, anomaly, strict=True):
        assert int(p.argmax()) == normal and a < 0.5, \
            f"{text!r}: {model.labels[int(p.argmax())]} {p.max():.2f}"
    assert (probs[:, normal] > 0.8).mean() >= 0.85


def test_alarm_readings_are_alerts_of_the_right_category(model: LoadedModel) -> None:
    probs, anomaly = model.classify([text for text, _ in ALARM_READINGS])
    for (text, label), p, a in zip(ALARM_READINGS, probs, anomaly, strict=True):
        got = model.labels[int(p.argmax())]
        assert a > 0.5 and got == label, f"{text!r}: {got} {p.max():.2f}, expected {label}"


def test_every_status_word_follows_the_rule(model: LoadedModel) -> None:
    texts, expected = [], []
    for label, words in STATUS_WORDS.items():
        for word in words:
            texts.append(f"sensors/pump-07/pump: temp_c=41.5 humidity=38 status={word}")
            expected.append(label)
    probs, anomaly = model.classify(texts)
    got = [model.labels[int(i)] for i in probs.argmax(axis=1)]
    # Every alarm word raises an alert and every all-is-well word none, without exception.
    flagged = [(t, float(a)) for t, a, e in zip(texts, anomaly, expected, strict=True)
               if (a > 0.5) != (e != "normal")]
    assert not flagged, flagged
    # The category follows the rule too, except where real daemons' text pulls a generic
    # word to its everyday meaning (docs/model.md: `stuck` reads as hardware, as in
    # "valve stuck"); anything beyond this known list fails.
    known = {"stuck": "hardware"}
    wrong = [(t, g) for t, g, e in zip(texts, got, expected, strict=True)
             if g != e and known.get(t.rsplit("=", 1)[1]) != g]
    assert not wrong, wrong


def _alert_rates(model: LoadedModel, rows: list[tuple[str, str]]) -> tuple[float, float, float]:
    """(model false alarms, keyword-baseline false alarms, model alert recall), computed."""
    texts = [t for t, _ in rows]
    normal = np.array([lab == "normal" for _, lab in rows])
    _, anomaly = model.classify(texts)
    base = np.array(KeywordBaseline(model.labels, "normal").predict(texts))
    base_alarm = base != model.labels.index("normal")
    return (float(np.mean(anomaly[normal] > 0.5)), float(np.mean(base_alarm[normal])),
            float(np.mean(anomaly[~normal] > 0.5)))


def test_realistic_lines_beat_keyword_rules_on_false_alarms(model: LoadedModel) -> None:
    """Computed on the hand-written lines by the shipped model (never trained on them)."""
    assert len(CHECK_LINES) >= 60 and len(TUNING_LINES) >= 60
    fa, _, recall = _alert_rates(model, TUNING_LINES)
    # 0 % / 88 % since values are drawn fresh per epoch (December 2026; 92 % before)
    assert fa <= 0.08 and recall >= 0.85, (fa, recall)
    fa, keyword_fa, recall = _alert_rates(model, CHECK_LINES)
    # 18 of 23 alerts and 1 of 52 healthy lines flagged since lines' heads are dropped
    # (December 2026; 15 and 1 with the warning and notice reviews applied before, 20 and 1
    # with the state lines before them, 13 and 2 before the state lines): docs/model.md
    # "Heads dropped".
    assert fa <= 0.04 and fa < keyword_fa and recall >= 18 / 23, (fa, keyword_fa, recall)


def test_device_lines_written_outside_the_repository(model: LoadedModel) -> None:
    """FRESH_CHECK_LINES: 120 device lines written by someone who never saw the corpus,
    the templates or the model, only measured."""
    assert len(FRESH_CHECK_LINES) >= 100
    fa, keyword_fa, recall = _alert_rates(model, FRESH_CHECK_LINES)
    # measured: 2 of 70 healthy lines flagged, 32 of 50 alerts found since lines' heads are
    # dropped (1 and 32 before; before the warning and notice reviews were applied 1 and 31;
    # before the state lines 3 and 33; the keyword baseline 28.6 % / 58 %; docs/model.md)
    assert fa <= 0.03 and fa < keyword_fa and recall >= 0.6, (fa, keyword_fa, recall)


def test_bare_state_lines_are_read_by_their_state(model: LoadedModel) -> None:
    """`wlan0: link is down` is an alert and `wlan0: link is up` is not (STATE_LINES:
    written before nanomodel.states, by its author, so optimistic)."""
    fa, _, recall = _alert_rates(model, STATE_LINES)
    # 0 of 22 healthy flagged and 14 of 18 alerts found by rule 6's model (15 of 18 since
    # lines' heads were dropped, 12 before; 14 before the warning and notice reviews were
    # applied; the model before the state lines: 3 of 22 and 5 of 18; docs/model.md "State
    # lines"). A retrain moves a line or two either way: the floor is the state lines'
    # purpose, most alerts found and at most one healthy line flagged.
    assert fa <= 1 / 22 and recall >= 14 / 18, (fa, recall)


def test_mqtt_kv_readings_look_like_the_agents_mqtt_source() -> None:
    r = random.Random(0)
    shape = re.compile(r"^[\w/-]+: (\w+=\S+)( \w+=\S+)*$")
    for label in STATUS_WORDS:
        for _ in range(30):
            reading = make_reading(label, r)
            assert shape.match(mqtt_kv(reading, r)), mqtt_kv(reading, r)
            if label != "normal":  # an alert reading always names its problem
                words = {str(v) for _, v in reading.fields} | {k for k, _ in reading.fields}
                assert words & {w for ws in STATUS_WORDS.values() for w in ws} or \
                    any(str(v).lower() in ("true", "yes", "on") for _, v in reading.fields)


def test_held_out_styles_never_appear_in_training_data() -> None:
    assert not set(TRAIN_STYLES) & set(HELDOUT_STYLES)
    train = generate(3000, 7)
    assert {e.style for e in train} == set(TRAIN_STYLES)
    assert {e.style for e in generate(600, 9, HELDOUT_STYLES)} == set(HELDOUT_STYLES)
    assert any(e.style == "mqtt-kv" and re.match(r"^\S+: \w+=", e.text) for e in train)


def test_the_benchmark_prints_the_hand_written_sets_as_the_test_counts_them(
        model: LoadedModel) -> None:
    """`benchmarks/model_real.py --hand` prints what docs/model.md quotes, the same counts."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "model_real.py"), "--hand"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    fa, _, recall = _alert_rates(model, FRESH_CHECK_LINES)
    healthy = sum(lab == "normal" for _, lab in FRESH_CHECK_LINES)
    alerts = len(FRESH_CHECK_LINES) - healthy
    row = (f"| fresh (written outside the repository) | {len(FRESH_CHECK_LINES)} | "
           f"{round(fa * healthy)} of {healthy}, {round(recall * alerts)} of {alerts} |")
    assert row in out, out
    assert all(f"| {name}" in out for name in ("check |", "state (optimistic)",
                                                "tuning (optimistic)")), out
