"""Sentences the RAS reporters assemble at run time, written out once per variant.

rasdaemon prints each kernel RAS trace event piecewise (``trace_seq_puts(s,
ev.error_type)`` after the count, " error:" after the type...), and mcelog builds its
threshold messages with ``xasprintf`` before handing them to a trigger; the harvester
sees neither as one format string. Each row is (file, anchor, template, level, label,
reason) as :class:`nanomodel.harvest.overrides.Expansion` takes them: the anchor is a
literal on the producing line, and the harvest fails if it has gone.

The labels are a technician's: one *corrected* error (ECC, PCIe AER) is counted, not
alerted — the hardware fixed it and the reporters' own thresholds say when the count
matters; an uncorrected or fatal error, a poisoned page taken offline, or a corrected
count over its threshold is ``hardware``.
"""

from __future__ import annotations

_MC = "(mc: %d location: %d:%d:%d address: 0x%08llx grain: %lld syndrome: 0x%08llx %s)"
_AER = "aer_event: %s %s "  # timestamp, PCI device name

Row = tuple[str, str, str, str, str, str]

_CORRECTED_ROUTINE = "one corrected error: the hardware fixed it; counted, not alerted"


def _aer_rows() -> list[Row]:
    rows: list[Row] = []
    for name in ("Receiver Error", "Bad TLP", "Bad DLLP", "Replay Timer Timeout"):
        rows.append(
            (
                "ras-aer-handler.c",
                f'"{name}"',
                f"{_AER}{name} Corrected",
                "info",
                "normal",
                f"a corrected PCIe link error ({name}): {_CORRECTED_ROUTINE}",
            )
        )
    for name in (
        "Completion Timeout",
        "Poisoned TLP",
        "Malformed TLP",
        "Data Link Protocol",
        "Unsupported Request",
    ):
        for severity in ("Uncorrected (Non-Fatal)", "Uncorrected (Fatal)"):
            rows.append(
                (
                    "ras-aer-handler.c",
                    f'"{name}"',
                    f"{_AER}{name} {severity}",
                    "info",
                    "hardware",
                    f"an uncorrected PCIe error ({name}): the device or its link is "
                    "failing and data may be lost",
                )
            )
    return rows


HPC_EXPANSION_ROWS: dict[str, list[Row]] = {
    "rasdaemon": [
        (
            "ras-mc-handler.c",
            '"Corrected"',
            f"mc_event: %s %d Corrected error: %s on %s {_MC}",
            "info",
            "normal",
            f"a corrected memory (ECC) error: {_CORRECTED_ROUTINE}",
        ),
        (
            "ras-mc-handler.c",
            '"Corrected"',
            f"mc_event: %s %d Corrected errors: %s on %s {_MC}",
            "info",
            "normal",
            "a few corrected memory errors reported together: counted; the page/DIMM "
            "threshold (its own message) says when they matter",
        ),
        (
            "ras-mc-handler.c",
            '"Uncorrected"',
            f"mc_event: %s %d Uncorrected error: %s on %s {_MC}",
            "info",
            "hardware",
            "an uncorrected memory error: data was lost, the DIMM needs replacing",
        ),
        (
            "ras-mc-handler.c",
            '"Fatal"',
            f"mc_event: %s %d Fatal error: %s on %s {_MC}",
            "info",
            "hardware",
            "a fatal memory error",
        ),
        (
            "ras-mc-handler.c",
            '"Info"',
            f"mc_event: %s %d Info error: %s on %s {_MC}",
            "info",
            "normal",
            "an informational memory controller event, no error to act on",
        ),
        *_aer_rows(),
        *(
            (
                "ras-memory-failure-handler.c",
                f'"{result}"',
                f"memory_failure_event: %s pfn=0x%llx page_type=%s action_result={result}",
                "info",
                "hardware",
                f"the kernel handled a poisoned (uncorrectable) memory page ({result}): "
                "the memory has uncorrectable errors",
            )
            for result in ("Recovered", "Failed", "Delayed", "Ignored")
        ),
        (
            "mce-intel.c",
            '"Corrected_error"',
            "mce_record: %s bank=%x, status= %llx, %s, mci=Corrected_error, %s, cpu_type= %s, "
            "cpu= %d, socketid= %d, misc= %llx, addr= %llx, mcgstatus= %llx, apicid= %x",
            "info",
            "normal",
            f"a corrected machine check: {_CORRECTED_ROUTINE}",
        ),
        (
            "mce-intel.c",
            '"Uncorrected_error"',
            "mce_record: %s bank=%x, status= %llx, %s, mci=Uncorrected_error, %s, cpu_type= %s, "
            "cpu= %d, socketid= %d, misc= %llx, addr= %llx, mcgstatus= %llx, apicid= %x",
            "info",
            "hardware",
            "an uncorrected machine check",
        ),
    ],
    "mcelog": [
        (
            "page.c",
            "Corrected memory errors on page %llx exceed threshold %s",
            "Corrected memory errors on page %llx exceed threshold %s",
            "error",
            "hardware",
            "corrected errors on one page over the configured threshold: the page is "
            "failing (mcelog offlines it)",
        ),
        (
            "page.c",
            "Replacements of page correctable error counter exceed threshold %s",
            "Replacements of page correctable error counter exceed threshold %s",
            "error",
            "hardware",
            "corrected errors spread over many pages, over the threshold",
        ),
        (
            "memdb.c",
            "Fallback %s memory error count %d exceeded threshold",
            "Fallback %s memory error count %d exceeded threshold",
            "error",
            "hardware",
            "a memory error count over its threshold",
        ),
        (
            "memdb.c",
            "%scorrected %s memory error count exceeded threshold",
            "corrected %s memory error count exceeded threshold",
            "error",
            "hardware",
            "corrected errors of one DIMM/socket over the configured threshold",
        ),
        (
            "memdb.c",
            "%scorrected %s memory error count exceeded threshold",
            "Uncorrected %s memory error count exceeded threshold",
            "error",
            "hardware",
            "uncorrected memory errors over the threshold",
        ),
    ],
}

__all__ = ["HPC_EXPANSION_ROWS"]

# (source, regex over the template, label, reason): the node-state messages of Slurm and
# opensm that the level-only cap would otherwise drop at random, decided here so that
# every harvest keeps them (the other level-only alerts are reviewed in review/).
HPC_OVERRIDE_ROWS: list[tuple[str, str, str, str]] = [
    (
        "slurm",
        r"health_check (failed|didn't run)",
        "hardware",
        "the node's health check failed: Slurm drains the node until someone looks",
    ),
    (
        "slurm",
        r"^(error: )?Setting node %s state to (DOWN|INVAL)",
        "hardware",
        "the controller takes a node out of service (INVAL: it registered with less "
        "hardware than configured)",
    ),
    (
        "slurm",
        r"due to (failure of node|node failure)|on failed node|Removing failed node"
        r"|cancelled by node failure",
        "hardware",
        "a job lost to a failed node",
    ),
    (
        "slurm",
        r"(unexpectedly )?rebooted(, killing|\s+boot_time)|Node %s rebooted, killing",
        "hardware",
        "a node rebooted without being asked to: a crash or power loss",
    ),
    (
        "slurm",
        r"not resumed by ResumeTimeout",
        "hardware",
        "a node did not come back from power saving and is marked down",
    ),
    ("slurm", r"^Down nodes: ", "hardware", "nodes the controller holds DOWN at start-up"),
    (
        "slurm",
        r"(Prolog|Epilog|prolog|epilog) (failure|failed|error) on (host|node)s? %s"
        r"|Prolog failed on node|\] (prolog|epilog) failed status",
        "software",
        "a node's prolog/epilog script failed; Slurm drains or downs the node",
    ),
    (
        "slurm",
        r"agent waited too long for nodes to respond",
        "hardware",
        "nodes did not answer the controller (node not responding)",
    ),
    (
        "slurm",
        r"Error responding to ping",
        "network",
        "slurmd could not answer the controller's ping",
    ),
    (
        "slurm",
        r"slurmstepd startup took %d sec, possible file system problem",
        "storage",
        "a job step took long to start: a slow shared file system or full memory",
    ),
    (
        "slurm",
        r"^(powering (up|down) node %s|power (up|down) request repeating for node)",
        "normal",
        "power saving suspends and resumes idle nodes: routine ('down' is not a fault)",
    ),
    (
        "opensm",
        r"vl15_send_mad: ERR 3E04: %s method failed",
        "network",
        "a port of the fabric did not answer the subnet manager",
    ),
    (
        "opensm",
        r"Lost torus switch|Missing torus (switch|[-+][xyz] link)|remote now missing",
        "network",
        "a switch or inter-switch link of the fabric is gone",
    ),
    (
        "opensm",
        r"Unexpected removal of neighbor node|DR SMP Send completed with error"
        r"|Failed to disable noisy physical port",
        "network",
        "a fabric link or node went away or misbehaves",
    ),
    (
        "opensm",
        r"Found duplicated node GUID|Duplicate Port GUID|Duplicate alias port GUID",
        "network",
        "two fabric ports claim one GUID: a misprogrammed adapter or cabling error",
    ),
]
