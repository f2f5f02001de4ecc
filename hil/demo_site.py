"""The demo site's own equipment: a pump-station PLC whose vendor logs short German,
abbreviated alarm texts as semicolon records (``date time;station;message number;text``).

The default model never saw this vendor's format or words (it calls every one of these
lines normal), so this is what the demo's operator fine-tunes v2 on. The live feed and
the technician's labeled history come from the same message catalogue (a PLC's alarm
texts are fixed; only the pump, the values, the time and the station differ), with
different seeds, so v2 is scored on lines it was not trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

# Label -> (message number, text template). Numbers are fixed per message, as in a PLC's
# alarm catalogue: "A" alarms, "M" operating messages.
PLC_MESSAGES: dict[str, list[tuple[str, str]]] = {
    "normal": [("M0412", "P{pump} Betrieb Automatik"),
               ("M0413", "P{pump} Zyklus {n} beendet, Q={flow} m3/h, p={bar} bar"),
               ("M0420", "Behaelter B1 Niveau {pct} %"),
               ("M0430", "Schwingung P{pump} i.O. {vib_ok} mm/s"),
               ("M0440", "Schmierung P{pump} ausgefuehrt"),
               ("M0450", "Stoerung P{pump} quittiert"),
               ("M0460", "Netzspannung i.O. {v_ok} V")],
    "hardware": [("A1102", "Motorschutz P{pump} ausgeloest"),
                 ("A1105", "Schwingung P{pump} zu hoch {vib_hi} mm/s"),
                 ("A1108", "Trockenlauf P{pump}, Pumpe abgeschaltet")],
    "thermal": [("A1201", "Wicklungstemp. P{pump} zu hoch {t_wind} Grad C"),
                ("A1203", "Schaltschrank Uebertemp. {t_cab} Grad C")],
    "power": [("A1301", "Phasenausfall L{phase}"),
              ("A1302", "Unterspannung Einspeisung {v_lo} V")],
    "sensor": [("A1401", "Drucksensor PT{n_small} Drahtbruch"),
               ("A1402", "Messwert FT{n_small} ungueltig")],
    "network": [("A1501", "Profinet Teilnehmer {n_small} ausgefallen"),
                ("A1502", "Fernwirkverbindung Leitstelle gestoert")],
}


@dataclass(frozen=True)
class SiteLine:
    """One PLC record and the label a technician gives it."""

    text: str
    label: str


def _record(number: str, template: str, rng: random.Random, station: str) -> str:
    text = template.format(
        pump=rng.randint(1, 4), n=rng.randint(1, 9999), flow=f"{rng.uniform(35, 48):.1f}",
        bar=f"{rng.uniform(2.5, 3.6):.1f}", pct=rng.randint(20, 95),
        vib_ok=f"{rng.uniform(0.5, 2.5):.1f}", vib_hi=f"{rng.uniform(7, 15):.1f}",
        v_ok=rng.randint(225, 238), v_lo=rng.randint(150, 195), t_wind=rng.randint(120, 155),
        t_cab=rng.randint(50, 65), phase=rng.randint(1, 3), n_small=rng.randint(1, 6))
    stamp = (f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2024 "
             f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}")
    return f"{stamp};{station};{number};{text}"


def labeled_history(count: int, seed: int) -> list[SiteLine]:
    """The technician's labeled lines from the PLC's alarm history (about half alarms)."""
    rng = random.Random(seed)
    alarms = [label for label in PLC_MESSAGES if label != "normal"]
    out = []
    for _ in range(count):
        label = "normal" if rng.random() < 0.5 else rng.choice(alarms)
        number, template = rng.choice(PLC_MESSAGES[label])
        out.append(SiteLine(_record(number, template, rng, f"SPS{rng.randint(1, 3)}"), label))
    return out


def sensor_readings(count: int, seed: int) -> list[SiteLine]:
    """Labeled readings like the site's pump sensors publish (other pumps, other values):
    in the technician's history too, so that v2 keeps reading them as v1 did."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        k = rng.random()
        temp, vib, status, label = (
            (rng.uniform(36, 48), rng.uniform(0.05, 0.3), "ok", "normal") if k < 0.6 else
            (rng.uniform(85, 110), rng.uniform(0.05, 0.3), "overheat", "thermal") if k < 0.8
            else (rng.uniform(36, 48), rng.uniform(1.5, 5), "vibration_alarm", "hardware"))
        out.append(SiteLine(f"sensors/pump-{rng.randint(1, 40):02d}/pump: temp_c={temp:.1f} "
                            f"humidity={rng.randint(30, 50)} vib_rms={vib:.2f} "
                            f"status={status}", label))
    return out


def live_feed(seed: int = 2811) -> list[SiteLine]:
    """What the site's PLC logs during the demo: every alarm message once, with an
    operating message after every second alarm; values and times from ``seed``."""
    rng = random.Random(seed)
    alarms = [(label, m) for label, messages in PLC_MESSAGES.items() if label != "normal"
              for m in messages]
    normal = PLC_MESSAGES["normal"]
    out: list[SiteLine] = []
    for i, (label, (number, template)) in enumerate(alarms):
        out.append(SiteLine(_record(number, template, rng, "SPS1"), label))
        if i % 2 == 1:
            number, template = normal[(i // 2) % len(normal)]
            out.append(SiteLine(_record(number, template, rng, "SPS1"), "normal"))
    return out


@dataclass(frozen=True)
class SiteScore:
    """How one model version labelled the site's alarm lines it was given."""

    right: int
    seen: int
    given: dict[str, int]  # label the model gave -> how many alarm lines got it


def score_alarm_lines(labelled: dict[str, str], feed: Iterable[SiteLine]) -> SiteScore:
    """Compare ``labelled`` (text -> label a model gave) with the technician's labels of
    the feed's alarm lines the model labelled."""
    right = seen = 0
    given: dict[str, int] = {}
    for line in feed:
        if line.label == "normal" or line.text not in labelled:
            continue
        seen += 1
        got = labelled[line.text]
        right += got == line.label
        given[got] = given.get(got, 0) + 1
    return SiteScore(right, seen, given)


def agreement(first: dict[str, str], second: dict[str, str],
              skip: set[str]) -> tuple[int, int]:
    """(same label, lines both labelled) over the lines not in ``skip``."""
    both = [t for t in first if t in second and t not in skip]
    return sum(first[t] == second[t] for t in both), len(both)
