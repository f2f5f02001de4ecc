"""The cluster-node sources: how their log calls are read and how their events are labelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.harvest import run
from nanomodel.harvest.source import Source
from nanomodel.harvest.sources_hpc import ipmi_event_templates


def test_function_name_prefixes_and_upstream_trees(tmp_path: Path) -> None:
    """opensm's OSM_LOG writes the calling function's name, Slurm passes __func__ to a
    leading "%s: "; levels above the default verbosity are dropped; a tree without a
    .dsc is versioned by its .upstream file."""
    (tmp_path / "fabricd_2.1.upstream").write_text("Version: 2.1\n")
    src_dir = tmp_path / "fabricd-2.1"
    src_dir.mkdir()
    (src_dir / "sweep.c").write_text(
        "static void sweep_hop_1(osm_sm_t * sm)\n"
        "{\n"
        '\tOSM_LOG(sm->p_log, OSM_LOG_ERROR, "ERR 3311: Request for NodeInfo failed (%s)\\n", s);\n'
        '\tOSM_LOG(sm->p_log, OSM_LOG_VERBOSE, "Sweeping hop 1 of the fabric now\\n");\n'
        "}\n"
        "extern void node_not_resp(char *name)\n"
        "{\n"
        '\terror("%s: node %s not responding to pings", __func__, name);\n'
        '\terror("%s: node %s left the partition", name, part);\n'
        "}\n"
    )
    osm = Source("fabricd", "fabricd", ("*.c",), r"OSM_LOG", "network", func_prefix="OSM_LOG")
    rows = {r["template"]: r for r in run.harvest_source(tmp_path, osm)}
    assert set(rows) == {"sweep_hop_1: ERR 3311: Request for NodeInfo failed (%s)"}
    assert rows["sweep_hop_1: ERR 3311: Request for NodeInfo failed (%s)"]["package"] == (
        "fabricd 2.1"
    )
    slurm = Source(
        "fabricd",
        "fabricd",
        ("*.c",),
        r"error",
        "software",
        prefixes={r"error": "error: "},
        func_arg=True,
    )
    got = {r["template"] for r in run.harvest_source(tmp_path, slurm)}
    # only the "%s" filled with __func__ becomes the function's name
    assert got == {
        "error: node_not_resp: node %s not responding to pings",
        "error: %s: node %s left the partition",
    }


def test_ipmievd_sentences_come_from_the_event_tables(tmp_path: Path) -> None:
    (tmp_path / "include/ipmitool").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    (tmp_path / "include/ipmitool/ipmi_sel.h").write_text(
        "static const struct ipmi_event_sensor_types generic_event_types[] = {\n"
        '    { 0x01, 0x09, 0xff, "Upper Critical going high" },\n'
        '    { 0x02, 0x01, 0xff, "Transition to Asserted" },\n'
        "};\n"
        "static const struct ipmi_event_sensor_types sensor_specific_event_types[] = {\n"
        '    { 0x08, 0x01, 0xff, "Failure detected" },\n'
        '    { 0x14, 0x00, 0xff, "Power Button pressed" },\n'
        "};\n"
    )
    names = ", ".join(f'"t{i}"' for i in range(8)) + ', "Power Supply"'
    names += ", " + ", ".join(f'"u{i}"' for i in range(9, 0x14)) + ', "Button"'
    (tmp_path / "lib/ipmi_strings.c").write_text(
        f"const char *ipmi_generic_sensor_type_vals[] = {{ {names} }};\n"
    )
    got = {template: origin for origin, template, _ in ipmi_event_templates(tmp_path)}
    # a condition (a supply failing) is logged both ways, a one-off event (a button) asserted
    assert "Power Supply sensor %s - Failure detected Asserted" in got
    assert "Power Supply sensor %s - Failure detected Deasserted" in got
    assert "Button sensor %s - Power Button pressed Asserted" in got
    assert "Button sensor %s - Power Button pressed Deasserted" not in got
    assert got["Power Supply sensor %s - Failure detected Asserted"] == (
        "include/ipmitool/ipmi_sel.h:6"
    )
    # threshold rows only, per sensor type and direction, with the unit ipmievd prints
    hot = "Temperature sensor %s Upper Critical going high Asserted (Reading %.2f > "
    assert hot + "Threshold %.2f degrees C)" in got
    assert not [t for t in got if "Transition to Asserted" in t]


@pytest.mark.parametrize(
    ("source", "template", "label"),
    [
        # one corrected error is counted, not alerted; uncorrected, poisoned, over threshold are
        ("rasdaemon", "aer_event: %s %s Receiver Error Corrected", "normal"),
        ("rasdaemon", "aer_event: %s %s Completion Timeout Uncorrected (Fatal)", "hardware"),
        ("rasdaemon", "Corrected Errors at %#llx exceeded threshold", "hardware"),
        ("rasdaemon", "Page offline choice on Corrected Errors is %s", "normal"),
        ("mcelog", "Corrected error", "normal"),
        ("mcelog", "Uncorrected error", "hardware"),
        ("mcelog", "Corrected memory errors on page %llx exceed threshold %s", "hardware"),
        ("ipmievd", "Memory sensor %s - Correctable ECC Asserted", "normal"),
        ("ipmievd", "Memory sensor %s - Uncorrectable ECC Asserted", "hardware"),
        ("ipmievd", "Power Supply sensor %s - Failure detected Asserted", "power"),
        ("ipmievd", "Power Supply sensor %s - Failure detected Deasserted", "normal"),
        ("ipmievd", "Power Supply sensor %s - Presence detected Deasserted", "power"),
        ("ipmievd", "Processor sensor %s - IERR Asserted", "hardware"),
        # nodes that stop answering or fail their health check; jobs and power saving are routine
        ("slurm", "error: Nodes %s not responding, setting DOWN", "hardware"),
        ("slurm", "error: health_check failed: rc:%u output:%s", "hardware"),
        ("slurm", "sched: Allocate %pJ NodeList=%s #CPUs=%u Partition=%s", "normal"),
        ("slurm", "_job_complete: %pJ OOM failure", "normal"),
        ("slurm", "powering down node %s", "normal"),
        ("opensm", "vl15_send_mad: ERR 3E04: %s method failed for attribute 0x%X (%s)", "network"),
    ],
)
def test_cluster_events_carry_a_technicians_label(source: str, template: str, label: str) -> None:
    by_template = {t.template: t for t in realtext.load_templates([source])}
    assert template in by_template, f"{source} lost {template!r}: re-harvest or fix the test"
    assert by_template[template].label == label, by_template[template].reason
