"""``[enrollment]`` of the server config: device certificates and what enrolled devices are told.

Kept apart from :mod:`fleet_server.config` so that the identity code and the config
do not import each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EnrollmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    broker_host: str | None = Field(
        default=None, min_length=1, max_length=253,
        description="Broker host name devices connect to (goes into the enrolled device's "
        "config and the broker certificate's names); default: mqtt.host.")
    broker_port: int = Field(default=8883, ge=1, le=65535,
                             description="The broker's TLS port for devices.")
    device_cert_hours: float = Field(
        default=30 * 24, ge=0.01, le=5 * 365 * 24,
        description="Validity of device certificates (hours). Devices renew after two thirds "
        "of it with `nanofleet-agent enroll --renew`; keep it short so a lost device's "
        "certificate dies on its own even if nobody revokes it.")
    token_default_hours: float = Field(
        default=24.0, gt=0, le=365 * 24,
        description="Lifetime of an enrollment token when the operator gives none.")
    token_max_hours: float = Field(
        default=30 * 24, gt=0, le=365 * 24,
        description="Longest lifetime an operator may give an enrollment token.")
    broker_reload_command: list[str] | None = Field(
        default=None, min_length=1, max_length=32,
        description="Command (argv, no shell) the server runs after it rewrote the CRL and "
        "ACL: on revocation, on re-enrollment of an id (its earlier certificates are "
        "revoked), on renewal (the renewed certificate is revoked) and when a quarantine "
        "starts or ends. E.g. "
        '["systemctl", "reload", "mosquitto"]. Without it the broker keeps accepting '
        "revoked certificates until someone reloads it.")
    broker_reload_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Longest the reload command may run (s).")
