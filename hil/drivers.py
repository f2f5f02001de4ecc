"""Making the rig's device drivers: ``local`` (an agent process from this tree),
``ssh`` (:mod:`hil.ssh_device`), ``systemd`` (:mod:`hil.systemd_device`: the package
under a real systemd) and ``qemu-arm64`` (:mod:`hil.emulated_device`).

SSH and emulated devices take tens of seconds each to set up (a root file system
copied, the .deb installed), so they are made in parallel, after the .deb they
share has been built (or found in the cache) once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hil.devices import DeviceDriver, FleetEndpoints, LocalProcessDevice
from hil.links import Link, NamespaceLink
from hil.report import Timeline
from hil.scenario import AgentSpec


def transport_for(link: Link, wanted: str) -> str:
    """The OTA transport: http on a direct network, mqtt otherwise (pure)."""
    if wanted != "auto":
        return wanted
    return "http" if link.kind == "direct" else "mqtt"


def make_driver(kind: str, device: str, link: Link, workdir: Path, agent: AgentSpec,
                endpoints: FleetEndpoints, transport: str) -> DeviceDriver:
    if kind == "ssh":
        from hil.ssh_device import SshDevice  # needs root, a rootfs and the .deb

        if not isinstance(link, NamespaceLink):
            raise RuntimeError(f"{device}: an SSH device needs a network namespace")
        return SshDevice(device, link, workdir, agent=agent, fleet=endpoints)
    if kind == "systemd":
        from hil.systemd_device import SystemdDevice  # root, a rootfs, systemd-nspawn

        if not isinstance(link, NamespaceLink):
            raise RuntimeError(f"{device}: a systemd device needs a network namespace")
        return SystemdDevice(device, link, workdir, agent=agent, fleet=endpoints)
    if kind == "qemu-arm64":
        from hil.emulated_device import EmulatedDevice  # root, binfmt, an arm64 rootfs

        return EmulatedDevice(device, link, workdir, agent=agent, fleet=endpoints,
                              ota_transport=transport)
    return LocalProcessDevice(device, link, workdir, agent=agent, fleet=endpoints,
                              ota_transport=transport)


def make_drivers(kinds: dict[str, str], links: dict[str, Link], transports: dict[str, str],
                 workdir: Path, agent: AgentSpec, endpoints: FleetEndpoints,
                 timeline: Timeline) -> dict[str, DeviceDriver]:
    """One driver per device (in ``kinds`` order); on a failure the ones made are closed."""
    if set(kinds.values()) & {"ssh", "systemd", "qemu-arm64"}:
        from hil.ssh_device import device_deb

        for arch in sorted({"arm64" if k == "qemu-arm64" else None
                            for k in kinds.values() if k != "local"}, key=str):
            deb = device_deb(arch=arch)
            timeline.add("rig", f"device package: {deb.name}")
    made: dict[str, DeviceDriver] = {}
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="hil-make") as pool:
        futures = {d: pool.submit(make_driver, kind, d, links[d], workdir / "devices" / d,
                                  agent, endpoints, transports[d])
                   for d, kind in kinds.items()}
        errors = []
        for device, future in futures.items():
            try:
                made[device] = future.result()
            except Exception as exc:
                errors.append(f"{device}: {type(exc).__name__}: {exc}")
    if errors:
        for driver in made.values():
            driver.close()
        raise RuntimeError("device set-up failed: " + "; ".join(errors))
    for device, driver in made.items():
        if kinds[device] != "local":
            timeline.add("rig", f"device installed: {driver.describe()}", device)
    return made
