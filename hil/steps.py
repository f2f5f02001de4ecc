"""The steps of a scenario's timeline, as pydantic models (one per action / fault /
condition / check; unknown keys are errors). The rig runs them in order."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contract.strict import Strict

OtaStateName = Literal["idle", "downloading", "verifying", "staged", "smoke_testing", "trial",
                       "committed", "failed", "rolled_back"]
CrashState = Literal["downloading", "verifying", "staged", "smoke_testing", "trial", "committed"]
Terminal = Literal["committed", "failed", "rolled_back"]
Variant = Literal["finetune", "wrong_golden", "nan", "collapse", "swapped", "tampered"]

_DEVICES = ("Devices this applies to (ids from [[devices]]); default: all of them.")


class SleepStep(Strict):
    """Let time pass (traffic keeps flowing)."""

    action: Literal["sleep"] = Field(description="Wait a fixed time.")
    seconds: float = Field(ge=0.0, description="How long (s).")


class PublishStep(Strict):
    """The operator signs a model version and uploads it; the server builds deltas."""

    action: Literal["publish"] = Field(description="Publish a model version.")
    version: int = Field(ge=2, description="Version number (v1 is the shipped default).")
    variant: Variant = Field(
        default="finetune", description="finetune: a head-only fine-tune of the default "
        "(a good update, a small delta); wrong_golden: its golden vectors do not match its "
        "outputs (smoke test fails); nan: finite on its golden vectors, NaN on much real "
        "traffic (trial rolls back); collapse: one label for every line (trial rolls back); "
        "swapped: the hardware and security outputs exchanged (trial rolls back); "
        "tampered: a good fine-tune whose stored artifacts are altered after signing (the "
        "device refuses them).")
    seed: int = Field(default=7, description="Fine-tune seed (different seeds, different "
                                              "weights).")
    minimum_version: int | None = Field(
        default=None, ge=1, description="Raise the slot's signed minimum version (anti-rollback).")


class DeployStep(Strict):
    """The operator sets the desired version of devices (``nanofleet deploy``)."""

    action: Literal["deploy"] = Field(description="Deploy a published version.")
    version: int = Field(ge=1, description="Published version to deploy.")
    devices: list[str] | None = Field(default=None, description=_DEVICES)


class MuteStep(Strict):
    """The operator mutes the message shape of each device's most frequent alert (as
    ``nanofleet alerts shapes --device`` ranks them, then ``nanofleet alerts mute``)."""

    action: Literal["mute"] = Field(description="Mute each device's top alert shape.")
    days: int = Field(default=1, ge=1, le=90, description="How long the mute lasts (days).")
    devices: list[str] | None = Field(default=None, description=_DEVICES)


class TrafficStep(Strict):
    """Stop or resume the lines written to devices' logs."""

    action: Literal["traffic"] = Field(description="Start or stop traffic.")
    run: bool = Field(description="true: lines flow; false: no more lines are written.")
    devices: list[str] | None = Field(default=None, description=_DEVICES)


class FaultBase(Strict):
    action: Literal["fault"] = Field(description="Inject a fault.")
    background: bool = Field(
        default=False, description="false: the step returns once the fault is over (device "
        "back on, broker back, link restored); true: the timeline goes on while it lasts (a "
        "power cut armed at an OTA state must come before the deploy that reaches it).")


class PowerCut(FaultBase):
    """kill -9 of the device's agent (its traffic stops too), then power back on."""

    fault: Literal["power_cut"] = Field(description="Cut the device's power.")
    device: str = Field(description="The device.")
    off_s: float = Field(default=2.0, ge=0.0, description="Time without power (s).")
    at_ota_state: CrashState | None = Field(
        default=None, description="Cut right after the agent persists this OTA state (the "
        "agent started through hil/ota_crash.py); default: cut at once.")
    within_s: float = Field(
        default=120.0, gt=0.0, description="at_ota_state: longest wait for the device to reach "
        "the state; not reaching it fails the step.")
    new_boot: bool = Field(
        default=True, description="The device comes back in a new boot (its kernel boot id "
        "changes, as after a real power cut); false: only the agent died (a crash, an OOM "
        "kill) and the device stayed up.")


class BrokerDown(FaultBase):
    """The MQTT broker stops (clean stop, persistence saved) and comes back on its port."""

    fault: Literal["broker_down"] = Field(description="Stop the broker for a while.")
    duration_s: float = Field(gt=0.0, description="Outage length (s).")


class NetworkLoss(FaultBase):
    """One device loses its network (see DeviceSpec.network for how it is cut)."""

    fault: Literal["network_loss"] = Field(description="Cut one device's network.")
    device: str = Field(description="The device.")
    duration_s: float = Field(gt=0.0, description="Outage length (s).")


FaultStep = Annotated[PowerCut | BrokerDown | NetworkLoss, Field(discriminator="fault")]


class WaitBase(Strict):
    action: Literal["wait_for"] = Field(description="Wait until a condition holds.")
    devices: list[str] | None = Field(default=None, description=_DEVICES + " All must meet it.")
    timeout_s: float = Field(default=60.0, gt=0.0,
                             description="Not met by then: the step fails and the run stops.")


class WaitOtaState(WaitBase):
    """An OTA event with this state, reported since the latest deploy step."""

    condition: Literal["ota_state"] = Field(description="A device reports an OTA state.")
    state: OtaStateName = Field(description="The state.")
    version: int | None = Field(default=None, description="Only events updating to this version.")


class WaitOtaDone(WaitBase):
    """The update started by the latest deploy step ended (committed, failed, rolled_back)."""

    condition: Literal["ota_done"] = Field(description="The update ended.")


class WaitResults(WaitBase):
    """Results keep coming: ``count`` more written lines have a result since the step began."""

    condition: Literal["results"] = Field(description="New results arrived.")
    count: int = Field(default=20, ge=1, description="Lines with a result (each device).")


class WaitOnline(WaitBase):
    """The device's retained status says online."""

    condition: Literal["online"] = Field(description="The device is online.")


WaitForStep = Annotated[WaitOtaState | WaitOtaDone | WaitResults | WaitOnline,
                        Field(discriminator="condition")]


class ExpectBase(Strict):
    action: Literal["expect"] = Field(description="Assert something; a failure fails the run.")
    devices: list[str] | None = Field(default=None, description=_DEVICES)
    within_s: float = Field(
        default=0.0, ge=0.0, description="Retry the check until it passes or this much time "
        "passed (s); 0: check once.")


class ExpectNoLostLines(ExpectBase):
    """Every line written before the check began has a result (duplicates, told apart by
    msg_id, are counted but not lost). Lines cut by a power cut before the agent read
    them are never written: a powered-off device makes no logs."""

    check: Literal["no_lost_lines"] = Field(description="No written line without a result.")
    within_s: float = Field(default=20.0, ge=0.0,
                            description="How long results may take to arrive (s).")


class ExpectOtaFinal(ExpectBase):
    """How the update started by the latest deploy ended."""

    check: Literal["ota_final"] = Field(description="The update's final state.")
    state: Terminal = Field(description="committed, failed or rolled_back.")
    version: int | None = Field(default=None, description="Version it updated to.")
    artifact: Literal["delta", "full"] | None = Field(
        default=None, description="What was downloaded.")
    reason: str | None = Field(default=None, description="Machine reason, e.g. smoke-test-failed.")


class ExpectLiveModel(ExpectBase):
    """One consistent live model: the agent serves exactly one model in its slot, of this
    version; its retained status says the same; every result produced after the update
    ended came from it."""

    check: Literal["live_model"] = Field(description="The live model's version.")
    version: int = Field(ge=1, description="Expected live version.")


class ExpectInferenceErrors(ExpectBase):
    """The agents' ``inference_errors`` counters (summed over restarts)."""

    check: Literal["inference_errors"] = Field(description="Inference errors at most `max`.")
    max: int = Field(default=0, ge=0, description="Most errors allowed.")


class ExpectMaxResultGap(ExpectBase):
    """The longest time without a result batch while an update was in progress (device
    clock, from downloading to its end) is at most ``max_s``."""

    check: Literal["max_result_gap"] = Field(description="Results kept flowing during updates.")
    max_s: float = Field(gt=0.0, description="Longest gap allowed (s).")


class ExpectOtaStatesSeen(ExpectBase):
    """These OTA states were reported in this order (others may come between)."""

    check: Literal["ota_states_seen"] = Field(description="OTA states in order.")
    states: list[OtaStateName] = Field(min_length=1, description="States, in order.")


class ExpectResultsByVersion(ExpectBase):
    """At least ``min`` lines were classified by model ``version``."""

    check: Literal["results_by_version"] = Field(description="Results of one model version.")
    version: int = Field(ge=1, description="Model version.")
    min: int = Field(default=1, ge=0, description="Fewest lines.")
    max: int | None = Field(default=None, ge=0, description="Most lines (0: none at all).")


class ExpectAlertsMuted(ExpectBase):
    """After the latest mute step (and ``settle_s`` for the list to reach the device), no
    alert of the muted shape arrived — including alerts sent from the spool after an
    outage — and the agent held some back: its ``alerts_muted`` counter (since its last
    start) is at least ``min_held``."""

    check: Literal["alerts_muted"] = Field(description="The muted shape stays quiet.")
    min_held: int = Field(default=1, ge=0, description="Fewest alerts the agent held back "
                                                        "since its last start.")
    settle_s: float = Field(default=5.0, ge=0.0,
                            description="Time the mute list may take to reach the agent (s).")


class ExpectNoUnexpectedExits(ExpectBase):
    """Agents exited only when a power_cut step cut them."""

    check: Literal["no_unexpected_exits"] = Field(description="No agent crashed on its own.")


ExpectStep = Annotated[
    ExpectNoLostLines | ExpectOtaFinal | ExpectLiveModel | ExpectInferenceErrors
    | ExpectMaxResultGap | ExpectOtaStatesSeen | ExpectResultsByVersion
    | ExpectAlertsMuted | ExpectNoUnexpectedExits, Field(discriminator="check")]

AnyStep = (SleepStep | PublishStep | DeployStep | MuteStep | TrafficStep | PowerCut
           | BrokerDown | NetworkLoss | WaitOtaState | WaitOtaDone | WaitResults | WaitOnline
           | ExpectNoLostLines | ExpectOtaFinal | ExpectLiveModel | ExpectInferenceErrors
           | ExpectMaxResultGap | ExpectOtaStatesSeen | ExpectResultsByVersion
           | ExpectAlertsMuted | ExpectNoUnexpectedExits)

# Discriminator values pydantic puts into error locations (not keys a user wrote).
STEP_TAGS = frozenset({
    "sleep", "publish", "deploy", "mute", "fault", "wait_for", "expect", "traffic", "power_cut",
    "broker_down", "network_loss", "ota_state", "ota_done", "results", "online",
    "no_lost_lines", "ota_final", "live_model", "inference_errors", "max_result_gap",
    "ota_states_seen", "results_by_version", "alerts_muted", "no_unexpected_exits"})


def devices_named(step: AnyStep) -> list[str]:
    """The device ids a step names explicitly."""
    if isinstance(step, PowerCut | NetworkLoss):
        return [step.device]
    named = getattr(step, "devices", None)
    return list(named) if named else []


def targets(step: AnyStep, all_devices: list[str]) -> list[str]:
    """The devices a step applies to."""
    return devices_named(step) or list(all_devices)


def describe(step: AnyStep) -> str:
    """One line for the report's timeline."""
    fields = step.model_dump(exclude_none=True, exclude_defaults=True, exclude={"action"})
    kind = fields.pop("fault", None) or fields.pop("condition", None) or fields.pop("check", None)
    head = f"{step.action} {kind}" if kind else step.action
    return head + "".join(f" {k}={v}" for k, v in fields.items())
