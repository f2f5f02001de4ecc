"""The pipeline health check that drives the systemd watchdog.

WATCHDOG=1 is sent only while the core is really working: the pipeline thread
is alive and looping, queued lines are being consumed, and the outbox sender is
alive. A broker outage is *not* unhealthy (store-and-forward covers it); a dead
source is reported as degraded but does not stop the watchdog, since restarting
the whole agent would not bring a missing log file back.
"""

from __future__ import annotations

import time
from typing import Any

STALL_S = 30.0
# A batch takes milliseconds (a slow SD card's synced commit, seconds). One still running
# after this long is hung (a runtime deadlock, a blocked write), and with every line of the
# queue inside it nothing else would tell: the checks below exempt a running batch. A
# batch held for a full disk beats while it waits and is exempt (degraded, not stuck).
BATCH_HUNG_S = 300.0


class HealthCheck:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self._last_progress = time.monotonic()
        self._last_count = 0

    def check(self) -> tuple[bool, list[str]]:
        a = self.agent
        problems: list[str] = []
        now = time.monotonic()
        # (a loop waiting for a batch to fill, up to batch_max_wait_ms, is not stuck:
        # before, a valid batch_max_wait_ms of 40 s starved the watchdog)
        limit = STALL_S + a.pipeline.longest_wait_s()
        if not a.pipeline.alive():
            problems.append("pipeline thread is not running")
        elif now - a.pipeline.heartbeat > limit and not a.pipeline.busy:
            problems.append("pipeline loop is stuck")
        elif a.pipeline.busy and not a.pipeline.holding \
                and now - a.pipeline.batch_started > BATCH_HUNG_S:
            problems.append(f"pipeline batch has run for {now - a.pipeline.batch_started:.0f}s")
        done = a.counters.get("inferences")
        if done != self._last_count or len(a.queue) == 0 or a.pipeline.holding:
            # (a batch held for a full disk: degraded below; a restart would not help)
            self._last_count, self._last_progress = done, now
        elif now - self._last_progress > limit:
            problems.append(f"no line processed for {now - self._last_progress:.0f}s "
                            f"with {len(a.queue)} queued")
        if not a.sender.alive():
            problems.append("outbox sender is not running")
        return not problems, problems

    def degraded(self) -> list[str]:
        held = self.agent.pipeline.holding
        return [f"source {s.name} stopped: {s.last_error}" for s in self.agent.sources
                if not s.alive()] + ([held] if held else [])
