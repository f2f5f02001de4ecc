"""The software that runs cluster nodes and reports their hardware: the InfiniBand subnet
manager, Slurm's node daemons, the kernel's RAS event reporters (rasdaemon, mcelog) and
the BMC's event log reader (ipmievd).

Only the paths that report node state are read: Slurm's controller files that track
nodes (ping, agent, node manager, node allocation, power saving) and the node daemon,
not its client commands or plugins; opensm's subnet manager and its MAD transport, not
its console; ipmitool's ``ipmievd`` daemon, not the ``ipmitool`` command. Where a
daemon logs a sentence built from table entries (ipmievd's ``"%s%s sensor %s - %s %s"``
with the sensor type and the event's description from IPMI's tables), the table rows are
read from the source (:func:`ipmi_event_templates`) so every sentence cites its row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from nanomodel.harvest.source import Source

_SLURM_PREFIXES = {
    r"error": "error: ",
    r"fatal|fatal_abort": "fatal: ",
    r"sched_info": "sched: ",
    r"sched_error": "error: sched: ",
}

HPC_SOURCES: list[Source] = [
    Source(
        "slurm",
        "slurm-wlm",
        (
            "src/slurmctld/node_mgr.c",
            "src/slurmctld/ping_nodes.c",
            "src/slurmctld/agent.c",
            "src/slurmctld/node_scheduler.c",
            "src/slurmctld/job_scheduler.c",
            "src/slurmctld/job_mgr.c",
            "src/slurmctld/power_save.c",
            "src/slurmctld/backup.c",
            "src/slurmd/slurmd/slurmd.c",
            "src/slurmd/slurmd/req.c",
            "src/slurmd/slurmd/get_mach_stat.c",
        ),
        # verbose/debug*/log_flag print only with raised SlurmdDebug/DebugFlags: not read
        r"error|info|fatal|fatal_abort|sched_info|sched_error",
        "software",
        prefixes=_SLURM_PREFIXES,
        func_arg=True,
    ),
    Source(
        "opensm",
        "opensm",
        ("opensm/*.c", "libvendor/osm_vendor_ibumad*.c", "complib/cl_event_wheel.c"),
        r"OSM_LOG|osm_log|osm_log_v2",
        "network",
        exclude=("test", "/tests/", "osm_console", "osm_perfmgr_db", "main.c"),
        func_prefix=r"OSM_LOG",
    ),
    Source(
        "rasdaemon",
        "rasdaemon",
        ("*.c",),
        r"log",
        "hardware",
        exclude=("test", "util/"),
    ),
    Source(
        "mcelog",
        "mcelog",
        (
            "mcelog.c",
            "memdb.c",
            "page.c",
            "cache.c",
            "trigger.c",
            "bus.c",
            "yellow.c",
            "unknown.c",
            "server.c",
            "dmi.c",
            "sysfs.c",
            "intel.c",
            "p4.c",
            "k8.c",
        ),
        r"Lprintf|Wprintf|Eprintf|SYSERRprintf|Gprintf",
        "hardware",
    ),
    Source(
        "ipmievd",
        "ipmitool",
        ("src/ipmievd.c",),
        r"lprintf|lperror",
        "hardware",
    ),
]

_ROW = re.compile(
    r'\{\s*(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+),\s*(0x[0-9a-fA-F]+),\s*"([^"]*)"\s*\}'
)
# Threshold events carry a reading and the crossed threshold in the sensor's unit.
_THRESHOLD_UNITS = {"Temperature": "degrees C", "Voltage": "Volts", "Current": "Amps", "Fan": "RPM"}


# Sensor types whose events are conditions that hold and end (a supply failing, a drive
# faulted, a part present): the BMC logs their deassertion too. The other types report
# one-off events (boot and firmware progress, buttons, version changes, power states)
# whose deassertion carries nothing.
_CONDITION_TYPES = {
    "Physical Security",
    "Processor",
    "Power Supply",
    "Power Unit",
    "Memory",
    "Drive Slot / Bay",
    "Critical Interrupt",
    "Cable / Interconnect",
    "Entity Presence",
    "LAN",
    "Management Subsys Health",
    "Battery",
    "Slot / Connector",
}


def _table(text: str, name: str) -> Iterator[tuple[int, int, str]]:
    """(line, sensor type code, description) of each row of the C table ``name``."""
    start = text.index(f"{name}[] = {{")
    end = text.index("};", start)
    for m in _ROW.finditer(text, start, end):
        yield text.count("\n", 0, m.start()) + 1, int(m.group(1), 16), m.group(4).strip()


def ipmi_event_templates(base: Path) -> Iterator[tuple[str, str, str]]:
    """(origin, template, level) of the sentences ipmievd logs for a BMC event.

    ipmievd logs every event at LOG_NOTICE as ``<sensor type> sensor <id> - <event>
    Asserted|Deasserted`` (compact sensor records, most discrete sensors) and threshold
    events as ``<type> sensor <id> <event> Asserted (Reading <v> > Threshold <t> <unit>)``.
    Discrete events are written asserted, and deasserted for the sensor types whose
    events are conditions (``_CONDITION_TYPES``): a deasserted fault is the fault ending,
    a deasserted "Presence detected" a part gone — the reviews decide which is which.
    """
    header = "include/ipmitool/ipmi_sel.h"
    sel = (base / header).read_text(errors="replace")
    strings = (base / "lib/ipmi_strings.c").read_text(errors="replace")
    vals = strings[strings.index("ipmi_generic_sensor_type_vals[] = {") :]
    types = re.findall(r'"([^"]*)"', vals[: vals.index("};")])
    for line, code, desc in _table(sel, "sensor_specific_event_types"):
        if code < len(types) and desc:
            yield f"{header}:{line}", f"{types[code]} sensor %s - {desc} Asserted", "notice"
            if types[code] in _CONDITION_TYPES:
                yield f"{header}:{line}", f"{types[code]} sensor %s - {desc} Deasserted", "notice"
    for line, code, desc in _table(sel, "generic_event_types"):
        if code != 0x01:  # threshold states only; the other generic rows are discrete
            continue
        for sensor, unit in _THRESHOLD_UNITS.items():
            for direction in ("Asserted", "Deasserted"):
                cmp = "<" if "going low" in desc else ">"
                yield (
                    f"{header}:{line}",
                    f"{sensor} sensor %s {desc} {direction} "
                    f"(Reading %.2f {cmp} Threshold %.2f {unit})",
                    "notice",
                )


# source → reader of sentences assembled from tables in the unpacked tree
TABLE_READERS: dict[str, Callable[[Path], Iterator[tuple[str, str, str]]]] = {
    "ipmievd": ipmi_event_templates,
}

__all__ = ["HPC_SOURCES", "TABLE_READERS", "ipmi_event_templates"]
