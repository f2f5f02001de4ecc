"""The operator's one-time setup through the CLI: server init, keys init, repo init
(with encrypted offline keys), and what each refuses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fleet_server.config import hash_token, load_config
from fleet_server.service import FleetService
from tests.support.fleet_cli import nf

pytestmark = pytest.mark.unit


def test_setup_ceremony_with_encrypted_offline_keys(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    code, out, err = nf("server", "init", "--config", str(config), "--data-dir",
                        str(tmp_path / "data"), "--public-url", "http://fleet:8080",
                        "--mqtt-port", "1884")
    assert code == 0, err
    token = out.split("NANOFLEET_TOKEN=")[1].split()[0]
    loaded = load_config(config)
    assert loaded.operator_tokens[0].sha256 == hash_token(token)
    assert token not in config.read_text()  # only the hash is stored
    code, _, err = nf("server", "init", "--config", str(config), "--data-dir", str(tmp_path))
    assert code == 2 and "refusing to overwrite" in err

    monkeypatch.setenv("CEREMONY_PASS", "correct horse battery staple")
    keys = tmp_path / "ceremony"
    code, out, err = nf("keys", "init", "--dir", str(keys), "--passphrase-env", "CEREMONY_PASS")
    assert code == 0, err
    assert "OFFLINE" in out and "root-3.pem" in out and "targets.pem" in out
    assert b"ENCRYPTED" in (keys / "root-1.pem").read_bytes()
    assert b"ENCRYPTED" not in (keys / "timestamp.pem").read_bytes()  # server starts unattended
    assert stat.S_IMODE(os.stat(keys / "targets.pem").st_mode) == 0o600

    code, _, err = nf("repo", "init", "--config", str(config), "--keys", str(keys))
    assert code == 2 and "root-1.pem" in err and "encrypted" in err  # no passphrase given
    code, out, err = nf("repo", "init", "--config", str(config), "--keys", str(keys),
                        "--root-threshold", "2", "--passphrase-env", "CEREMONY_PASS")
    assert code == 0, err
    assert "threshold 2" in out and "NOW move these files off this machine" in out
    assert (keys / "root.json").exists()
    online = sorted(p.name for p in loaded.keys_path.iterdir())
    assert online == ["deltas.pem", "deltas.pub.pem", "snapshot.pem", "snapshot.pub.pem",
                      "timestamp.pem", "timestamp.pub.pem"]
    service = FleetService(loaded.model_copy(update={"mqtt": loaded.mqtt.model_copy(
        update={"enabled": False})}))
    assert service.repo.root_version() == 1 and service.repo.online is not None
    service.db.dispose()
    code, _, err = nf("repo", "init", "--config", str(config), "--keys", str(keys),
                      "--passphrase-env", "CEREMONY_PASS")
    assert code == 1 and "already holds a repository" in err
