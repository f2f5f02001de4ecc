"""The keyword baseline the model is measured against: what a rules file would do.

A line gets the first label (in the order below) one of whose keywords it
contains, else the normal label. For label sets other than the default, each
label's own name is its keyword (plus the default keywords when names match).
"""

from __future__ import annotations

import re

KEYWORDS: dict[str, list[str]] = {
    "security": ["failed password", "invalid user", "authentication failure", "denied",
                 "unauthorized", "tamper", "intrusion", "signature", "certificate", "scan"],
    "thermal": ["temperature", "thermal", "overheat", "throttl", "hot"],
    "power": ["voltage", "power", "battery", "ups", "brownout", "overcurrent"],
    "storage": ["i/o error", "disk", "filesystem", "no space", "ext4", "sector", "read-only",
                "mmc", "sd card", "smart"],
    "network": ["link down", "unreachable", "timeout", "timed out", "packet loss",
                "connection refused", "dns", "resolution", "dhcp", "disconnect"],
    "sensor": ["sensor", "reading", "calibration", "adc"],
    "hardware": ["hardware error", "fan", "ecc", "usb", "i2c", "spi", "gpio", "watchdog",
                 "edac", "mce"],
    "software": ["segfault", "exception", "traceback", "oom", "out of memory", "crash",
                 "panic", "core dumped", "exit-code", "assertion"],
}


class KeywordBaseline:
    """``predict(texts) -> label indices`` by first keyword hit."""

    def __init__(self, labels: list[str], normal_label: str) -> None:
        self.labels = labels
        self.normal_index = labels.index(normal_label)
        self._rules: list[tuple[int, re.Pattern[str]]] = []
        ordered = [lab for lab in KEYWORDS if lab in labels]
        ordered += [lab for lab in labels if lab not in KEYWORDS and lab != normal_label]
        for lab in ordered:
            words = [*KEYWORDS.get(lab, []), lab.lower()]
            pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
            self._rules.append((labels.index(lab), pattern))

    def predict_one(self, text: str) -> int:
        for index, pattern in self._rules:
            if pattern.search(text):
                return index
        return self.normal_index

    def predict(self, texts: list[str]) -> list[int]:
        return [self.predict_one(t) for t in texts]
