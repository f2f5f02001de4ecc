"""Request and response bodies of the operator API (devices, tags, audit, tokens, errors).

They are the OpenAPI schema at ``/openapi.json``; rollouts have theirs in
:mod:`fleet_server.rollouts.views`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from contract.messages import OtaState
from contract.mutes import MAX_MUTE_DAYS
from contract.strict import Strict
from fleet_server.auth import Scope
from fleet_server.mute_rules import MAX_REASON_CHARS
from fleet_server.mutes import Outcome
from fleet_server.rollouts.spec import NAME_PATTERN, DeviceId, Label
from fleet_server.verdicts import LABEL_PATTERN, Verdict


class ErrorDetail(Strict):
    code: str = Field(description="Machine-readable error code, e.g. forbidden, unknown-device.")
    message: str = Field(description="What went wrong and what to do about it.")


class ErrorBody(Strict):
    error: ErrorDetail = Field(description="The error.")


def _error_response(description: str) -> dict[str, Any]:
    # Errors are JSON even on routes whose answer is text (the device CA's PEM files).
    return {"model": ErrorBody, "description": description,
            "content": {"application/json": {}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error_response("Bad request (the message names the problem)."),
    401: _error_response("No operator token, or an unknown/revoked one."),
    403: _error_response("The token lacks the scope this call needs."),
    404: _error_response("No such device, rollout, version or token."),
    409: _error_response("Conflicts with the current state (message says which)."),
    413: _error_response("Request body over the limit (publish: max_upload_bytes)."),
    422: _error_response("Body or query fields invalid (message names them)."),
}


# --- devices -----------------------------------------------------------------------------------

class LiveModel(Strict):
    name: str = Field(description="Model name.")
    version: int = Field(description="Version live on the device.")
    runtime: str | None = Field(default=None, description="onnxruntime or litert.")
    sha256: str | None = Field(default=None, description="Hash of the live bundle.")
    trial: bool | None = Field(default=None, description="Live on trial, not committed yet "
                               "(null: the agent does not say; older agents).")


class LastOta(Strict):
    slot: str | None = Field(description="Slot of the last OTA report.")
    state: OtaState = Field(description="Last OTA state reported.")
    to_version: int | None = Field(description="Version being installed.")
    reason: str | None = Field(description="Machine code of a failure or rollback.")
    detail: str | None = Field(description="Human explanation.")
    ts: float | None = Field(description="Device time of the report.")
    rollout_id: str | None = Field(description="Rollout the update belonged to.")


class DeviceSummary(Strict):
    device_id: str = Field(description="Device id (certificate CN, topic segment).")
    state: str = Field(description="online, offline (Last Will), stopped (clean exit) or "
                       "unknown (never reported).")
    health: str = Field(default="unknown", description="ok, degraded or unknown.")
    agent_version: str = Field(default="", description="nanofleet agent version.")
    reads: list[str] | None = Field(
        default=None, description="Bundle manifest features its agent reads, as its latest "
        "status said (contract.bundle_features); null: it did not say (an agent before "
        "December 2026, taken to read what those read) or no status came yet. A rollout "
        "skips a device that cannot read its bundle (reason cannot-read).")
    last_seen: float | None = Field(default=None, description="Unix time of the last report.")
    first_seen: float | None = Field(default=None, description="Unix time it first appeared.")
    models: dict[str, LiveModel] = Field(description="Slot -> live model.")
    last_ota: LastOta | None = Field(description="The newest OTA state it reported.")
    group: str | None = Field(default=None, description="Operator-assigned group.")
    tags: list[str] = Field(default_factory=list, description="Operator-assigned tags.")
    quarantined_until: float | None = Field(
        default=None, description="While the broker denies it every topic (a flood, or an "
        "operator's quarantine): when that ends (unix time); its connection may stay open.")


class DeviceList(Strict):
    devices: list[DeviceSummary] = Field(description="Matching devices, by id.")


class DeviceLabels(Strict):
    """``PATCH /api/v1/devices``: set group and tags of devices."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        # What _something checks, said in the schema: at least one change, and a group
        # cannot be set and cleared at once.
        "anyOf": [{"required": ["group"], "properties": {"group": {"type": "string"}}},
                  {"required": ["clear_group"], "properties": {"clear_group": {"const": True}}},
                  {"required": ["tags"], "properties": {"tags": {"type": "array"}}},
                  {"required": ["add_tags"], "properties": {"add_tags": {"minItems": 1}}},
                  {"required": ["remove_tags"],
                   "properties": {"remove_tags": {"minItems": 1}}}],
        "not": {"required": ["group", "clear_group"],
                "properties": {"group": {"type": "string"}, "clear_group": {"const": True}}}})

    devices: list[DeviceId] = Field(min_length=1, max_length=100_000,
                                    description="Devices to change: each must be known (it "
                                    "reported or enrolled), else 404, unless `create`.")
    create: StrictBool = Field(default=False, description="Add devices that never reported "
                               "or enrolled to the inventory (to group them before they are "
                               "installed); without it an unknown id (a typo) is refused.")
    group: Label | None = Field(default=None, description="Put them in this group.")
    clear_group: StrictBool = Field(default=False, description="Take them out of their group.")
    tags: list[Label] | None = Field(default=None, max_length=50,
                                     description="Replace their tags with these.")
    add_tags: list[Label] = Field(default_factory=list, max_length=50,
                                  description="Tags to add.")
    remove_tags: list[Label] = Field(default_factory=list, max_length=50,
                                     description="Tags to remove.")

    @model_validator(mode="after")
    def _something(self) -> DeviceLabels:
        if self.group and self.clear_group:
            raise ValueError("give group or clear_group, not both")
        if not (self.group or self.clear_group or self.tags is not None or self.add_tags
                or self.remove_tags):
            raise ValueError("nothing to change: give group, clear_group, tags, add_tags or "
                             "remove_tags")
        return self


# --- audit -------------------------------------------------------------------------------------

class AuditView(Strict):
    id: int = Field(description="Entry number (increasing).")
    at: float = Field(description="Unix time.")
    actor: str = Field(description="Operator token name (or the server, for its own acts).")
    action: str = Field(description="publish, deploy, rollout-create, rollout-pause, "
                        "rollout-resume, rollout-abort, token-create, token-revoke, "
                        "devices-label, ...")
    subject: str = Field(description="What it acted on (model version, rollout id, token).")
    detail: dict[str, Any] = Field(description="Parameters of the action.")


class AuditList(Strict):
    entries: list[AuditView] = Field(description="Newest first.")


# --- tokens ------------------------------------------------------------------------------------

class TokenCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Who will use it (the audit log "
                      "names it); never reused.")
    scopes: list[Scope] = Field(min_length=1, description="read, deploy and/or admin.")


class TokenCreated(Strict):
    name: str = Field(description="Token name.")
    scopes: list[Scope] = Field(description="Granted scopes.")
    token: str = Field(description="The token itself: shown this once, only its hash is kept.")


class TokenView(Strict):
    name: str = Field(description="Token name.")
    scopes: list[Scope] = Field(description="Granted scopes.")
    source: Literal["config", "database"] = Field(
        description="config: [[operator_tokens]] in the server config; database: made via API.")
    created_at: float | None = Field(description="Unix time (database tokens).")
    created_by: str | None = Field(description="Admin who made it (database tokens).")
    revoked_at: float | None = Field(description="Unix time it was revoked, if it was.")


class TokenList(Strict):
    tokens: list[TokenView] = Field(description="Config tokens first, then API tokens.")


class WhoAmI(Strict):
    name: str = Field(description="The calling token's name.")
    scopes: list[Scope] = Field(description="Its effective scopes.")
    source: Literal["config", "database"] = Field(description="Where the token is defined.")


# --- alerts and verdicts -----------------------------------------------------------------------

class VerdictView(Strict):
    verdict: Verdict = Field(description="The operator's verdict.")
    label: str = Field(description="The line's true label (normal for a false alarm).")
    by: str = Field(description="Token (or console user) that judged it.")
    at: float = Field(description="When (unix time).")


class AlertView(Strict):
    id: int = Field(description="The alert's id on this server (for its verdict).")
    device_id: str = Field(description="Device that sent it.")
    received_at: float = Field(description="Arrival at the server (unix time).")
    slot: str = Field(description="Model slot that raised it.")
    model_version: int = Field(description="Version of the model that raised it.")
    label: str = Field(description="The model's label for the line.")
    score: float = Field(description="That label's score.")
    reason: str = Field(description="Which threshold fired, and the words that drove it.")
    source: str = Field(description="Where the line came from on the device.")
    text: str = Field(description="The line (cut at 500 characters).")
    repeats: int = Field(description="Alerts of the same source and label held back before it.")
    verdict: VerdictView | None = Field(description="The operator's verdict, if any.")


class AlertList(Strict):
    alerts: list[AlertView] = Field(description="Newest first.")


class VerdictRequest(Strict):
    verdict: Verdict = Field(
        description="false_alarm: the line was healthy (it is stored as 'normal'); right: "
        "it needed attention (stored with the alert's label, or `label`).")
    label: str | None = Field(default=None, pattern=LABEL_PATTERN,
                              description="For a right alert: the line's true category when "
                              "the model's was wrong (e.g. storage instead of hardware).")


# --- alert mutes -------------------------------------------------------------------------------

class MuteRequest(Strict):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=7, ge=1, le=MAX_MUTE_DAYS, strict=True,
                      description=f"How long the mute lasts (1 to {MAX_MUTE_DAYS} days); "
                      "muting the same alert again extends it.")
    all_devices: StrictBool = Field(default=False, description="Mute the shape on every "
                                    "device (those that join later too), not only the "
                                    "alert's. Needs the admin scope.")
    any_source: StrictBool = Field(default=False, description="Mute the shape from any "
                                   "source, not only the alert's (the agent's source name, e.g. "
                                   "'file:/var/log/auth.log').")
    reason: str = Field(default="", max_length=MAX_REASON_CHARS,
                        description="Why (shown to technicians with the mute).")


class MuteView(Strict):
    id: str = Field(description="The mute's id (DELETE /api/v1/mutes/{id} lifts it).")
    device_id: str | None = Field(description="Device it applies to; null: every device.")
    source: str | None = Field(description="Source whose lines it mutes; null: any source.")
    shape: str = Field(description="The message shape muted (the alert's line with numbers, "
                       "addresses, ids and dates taken out).")
    prefix: bool = Field(description="The shape is only the start of the line's shape: the "
                         "server kept the alert's line cut (500 characters), and lines whose "
                         "shape starts with this one are muted. False: lines of exactly this "
                         "shape.")
    reason: str = Field(description="Why, in the operator's words.")
    created_by: str = Field(description="Token that made it.")
    created_at: float = Field(description="When (unix time).")
    expires_at: float = Field(description="When it ends by itself (unix time).")
    alert_id: int | None = Field(description="The alert it was made from.")


class MuteCreated(MuteView):
    outcome: Outcome = Field(description="created: a new mute; extended: the same mute was "
                             "active and now lasts longer; unchanged: it was active and "
                             "already lasted as long.")
    published: bool = Field(description="The broker acknowledged every device list it "
                            "changed (else they are sent again when the server reconnects).")


class MuteViews(Strict):
    mutes: list[MuteView] = Field(description="Active mutes, newest first.")


class MutesResent(Strict):
    lists: int = Field(description="Device lists sent.")
    acknowledged: int = Field(description="Of those, how many the broker acknowledged.")
    reset: bool = Field(description="Sent marked reset: applied whatever revision a device "
                        "holds.")


# --- alert shapes: which messages alert most ---------------------------------------------------

class AlertShapeView(Strict):
    shape: str = Field(description="The message shape a mute of these alerts names (the line "
                       "with numbers, addresses, ids and dates taken out); for lines no mute "
                       "can name (mutable false), their plain shape.")
    prefix: bool = Field(description="The shape is only the start of the lines' shape (the "
                         "server kept them cut at 500 characters), as a mute of them names it.")
    mutable: bool = Field(description="A mute of these alerts can be made; false: a blank "
                          "line, or a cut one whose sure start is too short to name.")
    source: str = Field(description="The agent source the lines came from.")
    count: int = Field(description="The volume: alerts plus repeats.")
    alerts: int = Field(description="Alerts of this shape the server keeps (in the window).")
    repeats: int = Field(description="Alerts of the same kind the agent held back and "
                         "counted in these alerts (part of the volume).")
    labels: dict[str, int] = Field(description="The model's labels, with their share of the "
                                   "volume.")
    devices: int = Field(description="Devices that sent alerts of this shape.")
    device_ids: list[str] = Field(description="Up to 10 of them, the most alerting first.")
    first_received_at: float = Field(description="Arrival of the oldest of these alerts "
                                     "(unix time).")
    last_received_at: float = Field(description="Arrival of the newest (unix time).")
    alert_id: int = Field(description="The newest alert's id: POST /api/v1/alerts/{id}/verdict "
                          "judges it and /mute mutes its shape.")
    false_alarms: int = Field(description="Of these alerts, those judged false alarms.")
    right: int = Field(description="Of these alerts, those judged right.")
    muted: bool = Field(description="An active mute covers this shape on every device that "
                        "sent it (as the console's muted tag tells).")
    muted_devices: int = Field(description="Devices of these on which an active mute covers "
                               "it.")


class AlertShapeList(Strict):
    shapes: list[AlertShapeView] = Field(description="The most alerting first (by count, then "
                                         "alerts, the newer last alert, source, shape).")
    total_shapes: int = Field(description="Shapes found among the alerts read (before "
                              "unjudged and limit).")
    alerts_read: int = Field(description="Alerts the ranking read.")
    complete: bool = Field(description="Every matching alert was read; false: only the newest "
                           "alerts_read (a ranking reads a bounded number).")
