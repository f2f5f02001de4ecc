from tests.support.mqtt_client import Collector


def test_plain_broker_roundtrip(broker):
    c = Collector(broker.port, "x/#")
    c.publish("x/y", b"hello")
    msgs = c.wait_for(lambda m: len(m) >= 1)
    assert msgs[0].payload == b"hello"
    c.close()


def test_tls_acl_confines_device(tls_broker):
    pki = tls_broker.pki
    a = pki.issue("dev-a")
    tls_a = {"ca_certs": str(pki.ca_file), "certfile": str(a.cert), "keyfile": str(a.key)}
    spy = Collector(tls_broker.port, "#")  # anonymous plain listener sees everything
    c = Collector(tls_broker.tls_port, ["nanofleet/v1/dev/dev-b/#", "nanofleet/v1/dev/dev-a/#"],
                  tls=tls_a)
    c.publish("nanofleet/v1/dev/dev-a/status", b"own")
    c.publish("nanofleet/v1/dev/dev-b/status", b"forged")
    spy.publish("nanofleet/v1/dev/dev-b/desired", b"secret")
    spy.wait_for(lambda m: any(x.payload == b"own" for x in m))
    import time
    time.sleep(0.5)
    assert not any(m.payload == b"forged" for m in spy.messages)
    assert not any(m.payload == b"secret" for m in c.messages)
    assert any(m.payload == b"own" for m in c.messages)
    c.close()
    spy.close()


def test_a_broker_that_refuses_its_config_says_why_at_once(tmp_path):
    """Mosquitto prints a bad config line to stderr before it opens its log file: the
    fixture's error carries that message, and it does not wait out the port timeout."""
    import time

    import pytest

    from hil.broker import Mosquitto

    bad = Mosquitto(tmp_path)
    bad.config.write_text(bad.config.read_text() + "\nno_such_option 1\n")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match='Unknown configuration variable "no_such_option"'):
        bad.start()
    assert time.monotonic() - t0 < 5
    assert bad.proc is None


def test_a_port_taken_before_the_broker_binds_it_is_traded_for_another(tmp_path):
    """free_port() cannot hold a port until mosquitto binds it; a parallel test worker
    took one first in CI (December 2026: "Address already in use", a test errored). The
    first start picks new ports; a restart keeps them (clients reconnect there)."""
    import socket

    import pytest

    from hil.broker import Mosquitto, ProductionBroker

    for broker in (Mosquitto(tmp_path / "plain"), ProductionBroker(tmp_path / "prod")):
        taken = broker.ports()
        holders = []
        for port in taken:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", port))
            s.listen()
            holders.append(s)
        try:
            broker.start()
            assert not set(broker.ports()) & set(taken)
            Collector(broker.port, "x/#").close()  # it listens where it says
            moved = broker.ports()
            broker.restart()
            assert broker.ports() == moved
        finally:
            broker.stop()
            for s in holders:
                s.close()
    fixed = Mosquitto(tmp_path / "fixed", port=taken[0])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", fixed.port))
        s.listen()
        with pytest.raises(RuntimeError, match="Address already in use"):
            fixed.start()  # the caller's own port is not traded away


def test_the_enrolled_fleet_starts_again_when_a_port_is_taken_first(tmp_path, monkeypatch):
    """The fleet tests' broker runs the config `broker-config` generates, whose ports are
    also in the server's config: a port taken before it binds starts the whole fleet again
    in a fresh directory, on new ports (the rig's brokers do the same, above)."""
    import socket

    from tests.support import enrolled_fleet

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    handed: list[int] = []
    real_free_port = enrolled_fleet.free_port

    def first_one_taken() -> int:
        handed.append(taken if not handed else real_free_port())
        return handed[-1]

    monkeypatch.setattr(enrolled_fleet, "free_port", first_one_taken)
    try:
        fleet = enrolled_fleet.start_enrolled_fleet(tmp_path)
    finally:
        squatter.close()
    try:
        assert "Address already in use" in (tmp_path / "mosquitto.log").read_text()
        assert fleet.workdir == tmp_path / "retry-1"
        assert taken not in (fleet.tls_port, fleet.server_port, fleet.plain_port)
        assert fleet.server.health()["mqtt"]["connected"]  # on the ports it was given
    finally:
        fleet.stop()
