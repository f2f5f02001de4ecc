import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config

MINIMAL = """
device_id = "pump-07"
state_dir = "/var/lib/nanofleet"
[mqtt]
host = "127.0.0.1"
port = 1883
[[sources]]
kind = "file"
path = "/var/log/pump.log"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_minimal_config_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.device_id == "pump-07"
    assert cfg.sources[0].kind == "file"
    assert cfg.control_socket == Path("/var/lib/nanofleet/agent.sock")
    r = check_config(write(tmp_path, MINIMAL))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_packaged_example_config_is_valid():
    example = Path(__file__).parent.parent / "packaging" / "agent.toml.example"
    assert load_config(example).device_id


@pytest.mark.parametrize("text, expected", [
    (MINIMAL.replace('port = 1883', 'port = 99999'), "mqtt.port"),
    (MINIMAL.replace('port = 1883', 'port = "x"'), "mqtt.port"),
    (MINIMAL.replace('device_id = "pump-07"', 'device_id = "pump/07"'), "device_id"),
    (MINIMAL.replace('device_id = "pump-07"', ''), "device_id: Field required (hint: add"),
    (MINIMAL.replace('kind = "file"', 'kind = "serial"'), "sources[0]"),
    (MINIMAL.replace('path = "/var/log/pump.log"', 'pth = "/x"'), "sources[0].pth"),
    (MINIMAL + '\n[pipeline]\nbatch_size = 0\n', "pipeline.batch_size"),
    (MINIMAL + '\n[pipeline]\nheap_trim_interval_s = -1\n', "pipeline.heap_trim_interval_s"),
    (MINIMAL + '\n[pipeline]\nheap_trim_interval_s = 3601\n', "pipeline.heap_trim_interval_s"),
    (MINIMAL + '\n[alerts]\nmute_storm_per_minute = 0\n',
     "alerts.mute_storm_per_minute: Input should be greater than or equal to 1 (hint: raise"),
    (MINIMAL + '\n[alerts]\nmute_storm_per_minute = 100001\n',
     "alerts.mute_storm_per_minute: Input should be less than or equal to 100000 (hint: lower"),
    (MINIMAL + '\n[alerts]\nmutes = "sometimes"\n', "alerts.mutes: Input should be a valid "
     "boolean, unable to interpret input (hint: use true or false)"),
    (MINIMAL + '\nfoo = 1\n', "foo: Extra inputs are not permitted (hint: unknown key"),
    (MINIMAL + '\n[mqtt.tls]\ncert_file = "/c"\n', "mqtt.tls"),
    ("device_id = ", "TOML syntax error"),
])
def test_bad_config_names_field_and_hint(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)
    r = check_config(path)
    assert r.returncode == 2
    assert expected in r.stderr


def test_every_error_is_listed(tmp_path):
    text = MINIMAL.replace("port = 1883", "port = 0") + "\n[pipeline]\nqueue_size = 1\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert len(err.value.problems) == 2


def test_duplicate_source_names_refused(tmp_path):
    text = MINIMAL + '\n[[sources]]\nkind = "file"\npath = "/var/log/pump.log"\n'
    with pytest.raises(ConfigError, match="unique"):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path):
    r = check_config(tmp_path / "nope.toml")
    assert r.returncode == 2
    assert "cannot read" in r.stderr


def test_heap_trim_interval_default_and_off(tmp_path):
    assert load_config(write(tmp_path, MINIMAL)).pipeline.heap_trim_interval_s == 10.0
    off = load_config(write(tmp_path, MINIMAL + "\n[pipeline]\nheap_trim_interval_s = 0\n"))
    assert off.pipeline.heap_trim_interval_s == 0


def test_mutes_are_on_by_default_with_a_storm_guard(tmp_path):
    alerts = load_config(write(tmp_path, MINIMAL)).alerts
    assert alerts.mutes is True and alerts.mute_storm_per_minute == 30
    off = load_config(write(tmp_path, MINIMAL + "\n[alerts]\nmutes = false\n"))
    assert off.alerts.mutes is False
