"""The journal catalog's failures (agent.journal_catalog): which ids count at which levels,
how they move the scores, and that they agree with systemd's own catalog and with the
labels of a real systemd's journal captured here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError, load_config
from agent.journal_catalog import (
    SYSTEMD_CATALOG,
    CatalogEvidenceConfig,
    apply_catalog,
    parse_message_id,
    trusted_message_id,
    verdict_of,
)
from agent.level_evidence import SYSLOG_LEVELS
from nanomodel.reallevels import priority
from nanomodel.realtext import load_journal

FAILED = "be02cf6855d2428ba40df7e9d022f03d"    # A start job for a unit has failed
STARTED = "39f53479d3a045ac8e11786248231fbf"   # ... has finished successfully: routine
COREDUMP = "fc2e22bc6ee647b6b90729ab34a250b1"  # systemd-coredump's, always at crit
SPAWN_FAILED = "641257651c1b4ec9a8624d7a40a9e1e7"  # the forked child's: left to the words
CATALOG_FILE = Path("/usr/lib/systemd/catalog/systemd.catalog")
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7


@pytest.mark.parametrize("value,expected", [
    (FAILED, FAILED), (FAILED.upper().encode(), FAILED), ([FAILED, STARTED], FAILED),
    ("be02cf68-55d2-428b-a40d-f7e9d022f03d", FAILED), (f" {FAILED}\n", FAILED),
    ("be02cf6855d2428ba40df7e9d022f03", None), ("g" * 32, None), ("", None), (None, None),
    ([], None), (42, None), ("be02cf68-55d2428b-a40d-f7e9-d022f03d0", None),
])
def test_message_ids_are_parsed_or_ignored(value: object, expected: str | None) -> None:
    assert parse_message_id(value) == expected


def test_a_failure_id_counts_at_notice_or_worse_and_nothing_else_counts() -> None:
    # A clean process exit is the same id at debug.
    for level in range(8):
        entry = verdict_of(FAILED, level)
        assert (entry is not None) == (level <= NOTICE), SYSLOG_LEVELS[level]
    assert verdict_of(FAILED, None) is None      # no trusted level, no verdict
    assert verdict_of(None, ERR) is None
    # Routine ids never lower a line (a cap would hide "Reached target Emergency Mode.");
    # a spawn failure's id is left to the words (nothing journald sets tells it apart).
    assert all(verdict_of(i, lv) is None for i in (STARTED, SPAWN_FAILED) for lv in range(8))
    # A core dump counts at any level: always logged at crit, and an ordinary user's crash
    # reaches the pipeline without its level (agent.sources.journald).
    assert all(verdict_of(COREDUMP, lv) is not None for lv in [*range(8), None])


@pytest.mark.parametrize("uid,pid,unit,message_id,kept", [
    ("0", "1", "init.scope", FAILED, True),
    (0, 1, None, FAILED, True),
    ("33", "812", "www.service", FAILED, False),              # any user may claim any id
    ("0", "4242", "systemd-coredump@0-4242-0.service", FAILED, False),
    ("1000", "4242", "systemd-coredump@0-4242-0.service", COREDUMP, True),
    (b"0", b"4242", b"systemd-coredump@1-4242-0.service", COREDUMP, True),
    ("0", "1", "init.scope", COREDUMP, False),               # not PID 1's id to give
    ("0", "900", "pump.service", COREDUMP, False),
    ("0", "900", "systemd-coredump.socket", COREDUMP, False),
    ("0", "1", "init.scope", STARTED, True),                 # kept, and weighs nothing
    ("0", "77", "x.service", STARTED, False),
])
def test_an_id_is_kept_only_from_the_program_that_owns_it(
        uid: object, pid: object, unit: object, message_id: str, kept: bool) -> None:
    assert (trusted_message_id(message_id, uid, pid, unit) == message_id) is kept
    assert trusted_message_id(None, uid, pid, unit) is None


def batch() -> tuple[np.ndarray, np.ndarray]:
    # labels: normal, software, storage
    probs = np.array([[0.40, 0.36, 0.24], [0.40, 0.36, 0.24], [0.10, 0.45, 0.45],
                      [0.99, 0.006, 0.004]], dtype=np.float32)
    return probs, 1.0 - probs[:, 0]


def test_a_failure_raises_the_anomaly_and_the_labels_keep_their_shares() -> None:
    probs, anomaly = batch()
    cfg = CatalogEvidenceConfig()
    verdicts = [verdict_of(FAILED, ERR), None, None, verdict_of(FAILED, WARNING)]
    p, a = apply_catalog(probs, anomaly, verdicts, cfg, normal_index=0)
    assert a[0] == pytest.approx(cfg.alert_anomaly)
    assert p[0, 1] / p[0, 2] == pytest.approx(0.36 / 0.24, rel=1e-5)
    assert p[1].tobytes() == probs[1].tobytes() and a[1] == anomaly[1]  # no verdict
    assert p[2].tobytes() == probs[2].tobytes()
    assert a[3] == pytest.approx(cfg.alert_anomaly)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    # Never lowered: a failure already surer than the floor keeps its score.
    probs2 = np.array([[0.01, 0.98, 0.01]], dtype=np.float32)
    _, a2 = apply_catalog(probs2, 1.0 - probs2[:, 0], [verdict_of(FAILED, ERR)], cfg, 0)
    assert a2 == pytest.approx([0.99], abs=1e-6)
    assert anomaly[0] == pytest.approx(0.60)  # inputs untouched


def test_no_verdict_keeps_the_batch_and_bad_batches_are_refused() -> None:
    probs, anomaly = batch()
    p, a = apply_catalog(probs, anomaly, [None] * 4, CatalogEvidenceConfig(), 0)
    assert p is probs and a is anomaly
    with pytest.raises(ValueError, match="3 verdicts for 4 lines"):
        apply_catalog(probs, anomaly, [None] * 3, CatalogEvidenceConfig(), 0)


def test_config_names_the_field_and_defaults_on(tmp_path: Path) -> None:
    base = (f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[[sources]]\nkind = "file"\npath = "{tmp_path}/x.log"\n')
    path = tmp_path / "agent.toml"
    path.write_text(base)
    assert load_config(path).model.catalog_evidence.enabled
    path.write_text(base + "[model.catalog_evidence]\nalert_anomaly = 0.3\n")
    with pytest.raises(ConfigError, match=r"model\.catalog_evidence\.alert_anomaly"):
        load_config(path)
    path.write_text(base + "[model.catalog_evidence]\nnormal_anomaly = 0.03\n")
    with pytest.raises(ConfigError, match=r"model\.catalog_evidence\.normal_anomaly"):
        load_config(path)
    path.write_text(base + "[model.catalog_evidence]\nenabled = false\n")
    assert load_config(path).model.catalog_evidence.enabled is False
    # Sent by default: the floor is above the default [alerts] anomaly threshold.
    from agent.config import AlertConfig
    assert CatalogEvidenceConfig().alert_anomaly >= AlertConfig().anomaly_threshold


@pytest.mark.skipif(not CATALOG_FILE.exists(), reason="no systemd catalog on this machine")
def test_every_id_is_systemds_with_the_subject_it_names() -> None:
    """The table is read from systemd's catalog: each id is there, and its subject is the
    catalog's with the placeholders said in words."""
    subjects = dict(re.findall(r"^-- ([0-9a-f]{32})\nSubject: (.*)$", CATALOG_FILE.read_text(),
                               re.MULTILINE))
    for message_id, entry in SYSTEMD_CATALOG.items():
        assert message_id in subjects, message_id
        theirs = set(re.findall(r"[a-z]+", subjects[message_id].lower()))
        ours = set(re.findall(r"[a-z]+", entry.subject.lower())) - {"a", "unit"}
        assert ours <= theirs, (message_id, subjects[message_id], entry.subject)


def test_the_failures_are_a_real_journals_alerts() -> None:
    """On the journal of a booted systemd (nanomodel/data/real/journal/, labelled through
    the harvested templates and read line by line), every line with a failure's id from
    the service manager is labelled an alert, and they are most of its alerts. (The table
    was read off systemd's source and catalog; this checks it against real entries.)"""
    lines = load_journal()
    judged = [c for c in lines if verdict_of(c.message_id, priority(c.level)) is not None]
    assert len(judged) >= 35
    assert all(c.label != "normal" for c in judged), [c.text for c in judged
                                                        if c.label == "normal"]
    alerts = [c for c in lines if c.label != "normal"]
    assert len(judged) / len(alerts) > 0.5
