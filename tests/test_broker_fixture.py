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

