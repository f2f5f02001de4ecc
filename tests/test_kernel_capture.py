"""A real kernel ring buffer becomes labelled ``linux`` lines (nanomodel.harvest.kernel_capture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanomodel.harvest.kernel_capture import kernel_rows

pytestmark = pytest.mark.unit
RAW = Path(__file__).resolve().parents[1] / "nanomodel/data/real/raw/dmesg-capture-machine.txt"


def test_boot_chatter_is_normal_and_a_disk_error_is_an_alert() -> None:
    rows = kernel_rows(
        "<6>[    0.409692] NET: Registered PF_INET protocol family\n"
        "<5>[    0.000000] Kernel command line: console=ttyS0 panic=1\n"
        "<7>[    0.500000] a debug line nobody sees\n"
        "<3>[ 1234.567890] blk_update_request: I/O error, dev mmcblk0, sector 123456\n",
        "test",
    )
    assert [r["label"] for r in rows] == ["normal", "normal", "storage"]
    assert rows[0]["text"] == "[    0.409692] NET: Registered PF_INET protocol family"
    assert rows[1]["reason"].startswith("review:")


def test_the_shipped_capture_is_this_raw_dmesg() -> None:
    import json

    shipped = Path(__file__).resolve().parents[1] / "nanomodel/data/real/captured/linux.jsonl"
    rows = [json.loads(line) for line in shipped.read_text().splitlines()]
    assert rows == kernel_rows(RAW.read_text(), f"dmesg -r of {RAW.name}")
