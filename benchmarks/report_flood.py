"""What one device's flood costs the rest of the fleet, with and without quarantine; and
what an alert storm loses, paced and unpaced.

1. **A status flood**: the fleet server and the broker `nanofleet broker-config` writes
   (mTLS, the device ACL, reloads through ``enrollment.broker_reload_command``), three
   enrolled devices. ``evil`` publishes statuses at QoS 0 as fast as it can for
   ``--flood-s`` seconds; meanwhile ``good-1`` sends ``--events`` OTA events (the lane
   statuses share) at 20 a second. Figures: events stored, the flood's shed reports, and
   when the quarantine came — once with ``[mqtt] flood_quarantine_s = 0`` (the server only
   logs), once with quarantines (``flood_min_s`` ``--min-s``).
2. **An alert storm** of ``--storm`` alerts in the agent's outbox (its real spool, link and
   sender), sent unpaced (as agents did before December 2026) and paced at ``[spool]
   report_rate_per_s`` (50/s): alerts stored by the server, shed, seconds.

Absolute figures depend on this machine's speed (a flood is "faster than the server
reads"): compare the two sides of each part.

    .venv/bin/python benchmarks/report_flood.py [--flood-s 12] [--events 100] [--min-s 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.token_bucket import TokenBucket  # noqa: E402
from contract import topics  # noqa: E402
from contract.messages import OtaEvent, Status  # noqa: E402
from tests.support.alert_fleet import alert_fleet_processes, api  # noqa: E402
from tests.support.enrolled_fleet import Client, EnrolledFleet, start_enrolled_fleet  # noqa: E402
from tests.support.outbox_drain import drain_outbox, stored_alerts  # noqa: E402


def _get(fleet: EnrolledFleet, path: str) -> Any:
    return api(fleet.setup, "GET", path).json()


def flood_round(quarantine: bool, flood_s: float, events: int, min_s: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="nf-flood-"))
    fleet = start_enrolled_fleet(work, {"flood_min_s": min_s,
                                        "flood_quarantine_s": 900.0 if quarantine else 0.0})
    try:
        for device in ("evil", "good-1"):
            fleet.enroll(device)
        evil = Client(fleet.tls_port, fleet.device_tls("evil"))
        stop = threading.Event()

        def flood() -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                status = Status(seq=seq, device_id="evil", state="online", agent_version="1")
                if evil.client.publish(topics.status("evil"),
                                       status.model_dump_json()).rc != 0:
                    time.sleep(0.002)

        flooder = threading.Thread(target=flood, daemon=True)
        started = time.monotonic()
        flooder.start()
        quarantined_after: float | None = None
        good = Client(fleet.tls_port, fleet.device_tls("good-1"))
        gap = max(0.0, flood_s - 1.0) / events
        for seq in range(1, events + 1):
            event = OtaEvent(seq=seq, device_id="good-1", slot="logs", state="downloading",
                             to_version=seq)
            good.publish(topics.ota("good-1"), event.model_dump_json())
            if quarantined_after is None and seq % 10 == 0 and \
                    _get(fleet, "/api/v1/quarantines")["quarantines"]:
                quarantined_after = time.monotonic() - started
            time.sleep(gap)
        stop.set()
        flooder.join(10)
        good.close()
        evil.close()
        time.sleep(3)  # ingest catches up
        stored = len(_get(fleet, "/api/v1/devices/good-1?events=10000")["events"])
        mqtt = _get(fleet, "/api/v1/health/detail")["mqtt"]
        return {"quarantine": quarantine, "events_stored": stored, "events_sent": events,
                "shed": mqtt["shed"], "floods": mqtt["floods"],
                "quarantined_after_s": None if quarantined_after is None
                else round(quarantined_after, 1)}
    finally:
        fleet.stop()


def storm_round(paced: bool, alerts: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="nf-storm-"))
    with alert_fleet_processes(work / "fleet") as (setup, broker, _):
        device = "paced-01" if paced else "unpaced-01"
        pacer = TokenBucket(50.0, 100.0) if paced else None
        took = drain_outbox(work, broker, device, pacer, alerts)
        stored = stored_alerts(setup, device)
        shed = api(setup, "GET", "/api/v1/health/detail").json()["mqtt"]["shed"]
    return {"paced": paced, "alerts_stored": stored, "alerts_sent": alerts, "shed": shed,
            "seconds": round(took, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-s", type=float, default=12.0)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--storm", type=int, default=600)
    args = parser.parse_args()
    figures: dict[str, Any] = {"flood": [], "storm": []}
    for quarantine in (False, True):
        r = flood_round(quarantine, args.flood_s, args.events, args.min_s)
        figures["flood"].append(r)
        print(f"status flood, quarantine {'on ' if quarantine else 'off'}: another device's "
              f"OTA events stored {r['events_stored']} of {r['events_sent']}; shed "
              f"{r['shed']}; quarantined after {r['quarantined_after_s']} s", flush=True)
    for paced in (False, True):
        r = storm_round(paced, args.storm)
        figures["storm"].append(r)
        print(f"alert storm, {'paced  ' if paced else 'unpaced'}: stored {r['alerts_stored']} "
              f"of {r['alerts_sent']}; shed {r['shed']}; {r['seconds']} s", flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
