"""HIL scenarios: a TOML file validated by pydantic (unknown keys are errors).

A scenario names its devices, their traffic, the agents' settings and a timeline
of steps (publish, deploy, fault, wait_for, expect, traffic, sleep). ``[params]``
holds values a step can refer to as ``"$name"`` (a whole string value), so that a
run can override them (``python -m hil run X --param outage_s=5``) without
editing the file. :func:`load_scenario` raises :class:`ScenarioError` whose lines
each name the offending field, e.g. ``steps[3].duration_s: ...``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN
from hil.steps import (
    STEP_TAGS,
    DeployStep,
    ExpectStep,
    FaultStep,
    MuteStep,
    NetworkLoss,
    PublishStep,
    SleepStep,
    TrafficStep,
    WaitForStep,
    devices_named,
)

SCENARIO_DIR = Path(__file__).parent / "scenarios"
DATA_DIR = Path(__file__).parent / "data"
_PARAM_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


class TrafficSpec(Strict):
    """Lines appended to a device's log file, which its agent follows."""

    source: Literal["corpus", "sample"] = Field(
        default="corpus", description="corpus: varied labeled lines from nanomodel's corpus "
        "generator (every label, many log styles); sample: the lines of `sample_file`, repeated.")
    sample_file: str = Field(
        default="pump.log", description="source = sample: a text file, relative to the scenario "
        "file or to hil/data/ (hil/data/pump.log ships).")
    lines_per_s: float = Field(default=20.0, gt=0.0, le=5000.0,
                               description="Lines written per second to this device's log.")
    seed: int = Field(default=11, description="source = corpus: generator seed.")


class AgentSpec(Strict):
    """Settings written into every device's agent config (the rest are agent defaults)."""

    trial_duration_s: float = Field(default=2.0, ge=0.0,
                                    description="OTA trial: shortest time a new model serves.")
    trial_min_inferences: int = Field(default=20, ge=0,
                                      description="OTA trial: lines classified before a verdict.")
    trial_timeout_s: float = Field(default=60.0, gt=0.0,
                                   description="OTA trial: longest trial.")
    metrics_interval_s: float = Field(default=1.0, ge=1.0,
                                      description="How often agents publish metrics (s).")
    mqtt_keepalive_s: int = Field(
        default=5, ge=5, description="MQTT keep-alive: how fast a lost link is noticed (s).")
    reconnect_max_s: int = Field(default=1, ge=1,
                                 description="Longest wait between MQTT reconnect attempts (s).")
    batch_size: int = Field(default=16, ge=1, description="Lines per inference batch.")
    batch_max_wait_ms: int = Field(default=20, ge=0,
                                   description="Longest a line waits for its batch (ms).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Agent log level (each device's log file is in the report "
        "directory).")
    alert_repeat_window_s: float | None = Field(
        default=None, ge=0.0, description="[alerts] repeat_window_s: alerts of one (source, "
        "label) within this window are grouped into the next (0: every alert goes out, so a "
        "check can tell what a mute held back); default: the agent's.")


class DeviceSpec(Strict):
    """One device under test."""

    id: str = Field(pattern=DEVICE_ID_PATTERN, description="Device id (appears in its topics).")
    driver: Literal["local", "ssh", "systemd", "qemu-arm64"] = Field(
        default="local", description="How the device is run: local = a real agent process on "
        "this machine with its own state directory and log file; ssh = a Debian root file "
        "system in its own network namespace with the device .deb installed, reached over "
        "SSH (needs root); systemd = the same with the agent run by its unit under systemd as "
        "PID 1 of a container (needs root and systemd-nspawn); qemu-arm64 = the arm64 .deb "
        "installed in an arm64 Debian root file system, its agent run under qemu-user-static "
        "(needs root and binfmt_misc). See docs/hil.md; `python -m hil run --driver` overrides it.")
    network: Literal["auto", "direct", "namespace", "proxy"] = Field(
        default="auto", description="How the device reaches the broker: direct (127.0.0.1), "
        "namespace (its own network namespace joined by a veth pair; needs root and `ip`), "
        "proxy (through a TCP relay in the rig). auto: direct, unless a network_loss step "
        "targets the device: then namespace when available, else proxy.")
    ota_transport: Literal["auto", "http", "mqtt"] = Field(
        default="auto", description="How the agent fetches updates: http (fleet server on "
        "127.0.0.1) or mqtt (through the broker). auto: http on a direct network, mqtt "
        "otherwise (the MQTT link is the device's only way out).")
    traffic: TrafficSpec | None = Field(
        default=None, description="This device's traffic; default: the scenario's [traffic].")


class FleetSpec(Strict):
    """The fleet server side."""

    initial_release: bool = Field(
        default=True, description="Publish the shipped default model (v1) before the devices "
        "start, so that they run a published version and deltas to later versions exist.")
    model: str = Field(default="nano-logs", description="Model name the scenario publishes.")


Step = Annotated[
    SleepStep | PublishStep | DeployStep | MuteStep | FaultStep | WaitForStep | ExpectStep
    | TrafficStep, Field(discriminator="action")]


class Scenario(Strict):
    """A HIL scenario: devices, traffic, agent settings and a timeline."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Short name (report names).")
    description: str = Field(default="", description="What the scenario shows, for the report.")
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Values steps refer to as \"$name\"; a run may "
        "override them (--param name=value).")
    fleet: FleetSpec = Field(default_factory=FleetSpec, description="Fleet server set-up.")
    agent: AgentSpec = Field(default_factory=AgentSpec, description="Every agent's settings.")
    traffic: TrafficSpec = Field(default_factory=TrafficSpec,
                                 description="Default traffic of every device.")
    devices: list[DeviceSpec] = Field(min_length=1, description="The devices under test.")
    steps: list[Step] = Field(min_length=1, description="The timeline, run in order.")
    max_duration_s: float = Field(
        default=600.0, gt=0.0, description="The whole run is aborted (and fails) after this.")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [d.id for d in self.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids must be unique, repeated: {dupes}")
        problems = []
        for i, step in enumerate(self.steps):
            unknown = sorted(set(devices_named(step)) - set(ids))
            if unknown:
                problems.append(f"steps[{i}] ({step.action}) names unknown device(s) {unknown}; "
                                f"devices are {ids}")
        lossy = {s.device for s in self.steps if isinstance(s, NetworkLoss)}
        for d in self.devices:
            if d.id in lossy and d.network == "direct":
                problems.append(f"device {d.id!r} has network = \"direct\" but a network_loss "
                                "step targets it: use \"auto\", \"namespace\" or \"proxy\"")
            if d.network in ("namespace", "proxy") and d.ota_transport == "http":
                problems.append(f"device {d.id!r}: ota_transport = \"http\" needs network = "
                                "\"direct\" (the fleet server's HTTP is only on 127.0.0.1)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def device(self, device_id: str) -> DeviceSpec:
        return next(d for d in self.devices if d.id == device_id)

    def traffic_of(self, device_id: str) -> TrafficSpec:
        return self.device(device_id).traffic or self.traffic


class ScenarioError(ValueError):
    def __init__(self, origin: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{origin}: invalid scenario:\n  " + "\n  ".join(problems))


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    in_tags = False  # right after a list index, pydantic inserts union tags: not user keys
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
            in_tags = True
        elif in_tags and p in STEP_TAGS:
            continue
        else:
            out += ("." if out else "") + str(p)
            in_tags = False
    return out or "(top level)"


def substitute_params(data: dict[str, Any], overrides: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    """Replace every string value ``"$name"`` with ``params[name]`` (after overrides,
    whose text is read as a TOML value: ``5`` is a number, ``abc`` a string)."""
    params = dict(data.get("params") or {})
    if not isinstance(params, dict):
        raise ScenarioError("params", ["params must be a table"])
    problems = []
    for key, text in (overrides or {}).items():
        if key not in params:
            problems.append(f"--param {key}: the scenario has no such parameter; it has "
                            f"{sorted(params) or 'none'}")
            continue
        try:
            params[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            params[key] = text
    if problems:
        raise ScenarioError("command line", problems)

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and (m := _PARAM_RE.match(value)):
            if m.group(1) not in params:
                problems.append(f"{where}: refers to ${m.group(1)}, which [params] does not "
                                f"define (defined: {sorted(params) or 'none'})")
                return value
            return params[m.group(1)]
        return value

    out = {k: walk(v, k) for k, v in data.items() if k != "params"}
    if problems:
        raise ScenarioError("scenario", problems)
    return {"params": params, **out}


def parse_scenario(data: dict[str, Any], origin: str = "<scenario>",
                   overrides: dict[str, str] | None = None) -> Scenario:
    try:
        resolved = substitute_params(data, overrides)
    except ScenarioError as exc:
        raise ScenarioError(origin, exc.problems) from None
    try:
        return Scenario.model_validate(resolved)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg += " (unknown key: check the spelling, or remove it)"
            elif err["type"] == "union_tag_invalid":
                msg += " (check the spelling of action / fault / condition / check)"
            problems.append(f"{_loc(err['loc'])}: {msg}")
        raise ScenarioError(origin, problems) from None


def find_scenario(name: str) -> Path:
    """A path, or the name of a shipped scenario (with or without .toml)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = SCENARIO_DIR / (name if name.endswith(".toml") else f"{name}.toml")
    if shipped.exists():
        return shipped
    known = ", ".join(p.stem for p in shipped_scenarios())
    raise ScenarioError(name, [f"no such file, and no shipped scenario of that name "
                               f"(shipped: {known})"])


def load_scenario(path: Path, overrides: dict[str, str] | None = None) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), ["the file is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, 5000-digit ints, depth
        raise ScenarioError(str(path), [f"TOML syntax error: {exc}"]) from None
    return parse_scenario(data, str(path), overrides)


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml"))


def resolve_sample(spec: TrafficSpec, scenario_file: Path | None) -> Path:
    """Where a sample traffic file is: beside the scenario, else in hil/data/."""
    for base in ([scenario_file.parent] if scenario_file else []) + [DATA_DIR]:
        candidate = base / spec.sample_file
        if candidate.is_file():
            return candidate
    raise ScenarioError(spec.sample_file, ["sample_file not found beside the scenario or in "
                                           f"{DATA_DIR}"])
