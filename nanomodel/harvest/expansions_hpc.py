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
