"""Daemon families for the corpus: what a given daemon says, healthy and not.

:mod:`nanomodel.templates` holds messages per category that any daemon might log.
Real devices are dominated by a few chatty daemons (systemd, cron, DHCP and NTP
clients, sshd, apt, the kernel at boot, the site's own application daemons), whose
informational lines mention the very subsystems alerts are about ("DHCPREQUEST",
"session closed", "firmware 4.2.1", "power save"). Each family here pairs a daemon's
healthy chatter with its alerts, so the model learns from the content, not the tag,
and informational lines of an unfamiliar daemon read as ``normal``.

Generic application chatter (``APP``) is built from neutral parts (a component, what
it did, neutral key=value statistics) so that a daemon the corpus never names still
looks healthy when it says it is ready, loaded, polled or finished something.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """Tags a daemon logs under, and its messages per label."""

    names: list[str]
    messages: dict[str, list[str]]


FAMILIES: dict[str, Family] = {
    "systemd": Family(["systemd"], {
        "normal": [
            "Started {unit_desc}.", "Starting {unit_desc}...", "Stopping {unit_desc}...",
            "Stopped {unit_desc}.", "Finished {unit_desc}.", "Reached target {target}.",
            "Stopped target {target}.", "Mounted {mount}.", "Mounting {mount}...",
            "Listening on {socket_desc}.", "Created slice {slice}.", "Removed slice {slice}.",
            "{unit}: Succeeded.", "{unit}: Deactivated successfully.",
            "{unit}: Consumed {n}.{n}s CPU time.", "Reloading.", "Reloading finished in {ms} ms.",
            "Startup finished in {n}.{n}s (kernel) + {n}.{n}s (userspace) = {n}.{n}s.",
            "Condition check resulted in {unit_desc} being skipped.",
            "Queued start job for default target {target}.", "Detected architecture arm64.",
            "{unit}: Scheduled restart job for config reload, restart counter is at 0.",
            "Journal started", "Received SIGRTMIN+20 from PID {pid} (plymouthd).",
        ],
        "software": [
            "Failed to start {unit_desc}.", "{unit}: Failed with result 'exit-code'.",
            "{unit}: Main process exited, code=exited, status=1/FAILURE",
            "{unit}: Main process exited, code=killed, status=9/KILL",
            "{unit}: Watchdog timeout (limit 3min)!",
            "{unit}: Failed with result 'core-dump'.",
            "Dependency failed for {unit_desc}.",
            "{unit}: Scheduled restart job, restart counter is at {n}.",
        ],
        "storage": ["Failed to mount {mount}.", "{mount}: Mount process exited, code=exited, "
                    "status=32/n/a"],
    }),
    "cron": Family(["CRON", "cron", "crond", "anacron"], {
        "normal": [
            "({user}) CMD ({cmd})", "pam_unix(cron:session): session opened for user {user}"
            "(uid={n}) by (uid=0)", "pam_unix(cron:session): session closed for user {user}",
            "(CRON) INFO (pidfile fd = 3)", "(*system*) RELOAD (/etc/crontab)",
            "Job `cron.daily' started", "Job `cron.daily' terminated",
            "Normal exit ({n} jobs run)", "Anacron 2.3 started on 2024-01-12",
        ],
        "software": ["(CRON) error (grandchild #{pid} failed with exit status 1)",
                     "({user}) CMD failed: {cmd} exited with status 127"],
    }),
    "dhcp": Family(["dhclient", "dhclient", "udhcpc"], {
        "normal": [
            "DHCPREQUEST for {ip} on {iface} to {ip2} port 67", "DHCPACK of {ip} from {ip2}",
            "DHCPOFFER of {ip} from {ip2}", "bound to {ip} -- renewal in {n} seconds.",
            "DHCPDISCOVER on {iface} to 255.255.255.255 port 67 interval {n}",
            "Listening on LPF/{iface}/{mac}", "Sending on   LPF/{iface}/{mac}",
            "lease of {ip} obtained, lease time {n}", "sending renew to {ip2}",
        ],
        "network": ["No DHCPOFFERS received.", "No working leases in persistent database - "
                    "sleeping.", "receive_packet failed on {iface}: Network is down",
                    "DHCPREQUEST for {ip} on {iface}: no answer after {n} attempts, lease lost"],
    }),
    "ntp": Family(["chronyd", "systemd-timesyncd", "ntpd"], {
        "normal": [
            "Initial synchronization to time server {ip}:123 ({host}).",
            "Synchronized to time server {ip}:123 ({host}).", "Selected source {ip} ({host})",
            "System clock was stepped by {n}.{n} seconds", "Source {ip} online",
            "chronyd version 4.2 starting (+CMDMON +NTP +REFCLOCK +RTC)",
            "Listen normally on {n} {iface} {ip}:123", "frequency initialized {n}.{n} PPM",
            "Contacted time server {ip}:123 ({host}).",
        ],
        "network": ["Can't synchronise: no selectable sources",
                    "Timed out waiting for reply from {ip}:123 ({host}).",
                    "No network connectivity, watching for changes.",
                    "Source {ip} offline", "no servers can be used, system clock unsynchronized"],
    }),
    "sshd": Family(["sshd"], {
        "normal": [
            "Accepted publickey for {user} from {ip} port {port} ssh2: {keytype} SHA256:{b64}",
            "Accepted password for {user} from {ip} port {port} ssh2",
            "pam_unix(sshd:session): session opened for user {user}(uid={n}) by (uid=0)",
            "pam_unix(sshd:session): session closed for user {user}",
            "Disconnected from user {user} {ip} port {port}",
            "Starting session: shell on pts/{n} for {user} from {ip} port {port} id 0",
            "Starting session: command for {user} from {ip} port {port} id 0",
            "Close session: user {user} from {ip} port {port} id 0",
        ],
        "security": [
            "Connection closed by authenticating user {user} {ip} port {port} [preauth]",
            "Disconnected from invalid user {user} {ip} port {port} [preauth]",
            "error: maximum authentication attempts exceeded for {user} from {ip} port {port} "
            "ssh2 [preauth]", "Did not receive identification string from {ip} port {port}",
            "PAM {n} more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost={ip}  user={user}", "banner exchange: Connection from {ip} port {port}: "
            "invalid format", "Unable to negotiate with {ip} port {port}: no matching key "
            "exchange method found [preauth]",
        ],
    }),
    "sudo-fail2ban": Family(["sudo", "fail2ban-server", "fail2ban.actions", "fail2ban.filter"], {
        "normal": [
            "{user} : TTY=pts/{n} ; PWD=/home/{user} ; USER=root ; COMMAND={command}",
            "pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid={n})",
            "pam_unix(sudo:session): session closed for user root", "Server ready",
            "Jail 'sshd' started", "Jail 'sshd' uses pyinotify {{}}", "Starting Fail2ban v0.11.2",
            "NOTICE  [sshd] Unban {ip}", "INFO    [sshd] Found {ip} - 2024-01-12 08:00:00",
        ],
        "security": [
            "NOTICE  [sshd] Ban {ip}", "WARNING [sshd] {ip} already banned",
            "{user} : 3 incorrect password attempts ; TTY=pts/{n} ; PWD=/home/{user} ; "
            "USER=root ; COMMAND={command}", "{user} : user NOT in sudoers ; TTY=pts/{n} ; "
            "PWD=/home/{user} ; USER=root ; COMMAND={command}",
            "pam_unix(sudo:auth): authentication failure; logname={user} uid={n} euid=0 "
            "tty=/dev/pts/{n} ruser={user} rhost=  user={user}",
        ],
    }),
    "ups-smart": Family(["apcupsd", "upsmon", "upsd", "smartd"], {
        "normal": [
            "Power is back. UPS running on mains.", "UPS {ups} on line power",
            "apcupsd 3.14.14 (31 May 2016) debian startup succeeded", "Startup successful",
            "UPS {ups}: battery charge {pct}%, runtime {n} min", "Communications with UPS "
            "restored.", "Device: /dev/{disk} [SAT], SMART Usage Attribute: 194 "
            "Temperature_Celsius changed from {n} to {n}", "Device: /dev/{disk}, opened",
            "Device: /dev/{disk} [SAT], is SMART capable. Adding to \"monitor\" list.",
            "Monitoring {n} ATA/SATA, 0 SCSI/SAS and {n} NVMe devices",
            "Device: /dev/{disk} [SAT], previous self-test completed without error",
            "Device: /dev/{disk} [SAT], SMART Usage Attribute: 190 Airflow_Temperature_Cel "
            "changed from {n} to {n}",
        ],
        "power": ["Power failure.", "Running on UPS batteries.", "UPS {ups} on battery",
                  "UPS {ups} battery is low", "Battery power exhausted.",
                  "Reached remaining time percentage limit on batteries.",
                  "Initiating system shutdown, UPS {ups} on battery and low"],
        "storage": ["Device: /dev/{disk} [SAT], FAILED SMART self-check. BACK UP DATA NOW!",
                    "Device: /dev/{disk} [SAT], SMART Prefailure Attribute: 5 "
                    "Reallocated_Sector_Ct changed from {n} to {n}",
                    "Device: /dev/{disk} [SAT], Self-Test Log error count increased from 0 "
                    "to {n}", "Device: /dev/{disk} [SAT], ATA error count increased from {n} "
                    "to {n}"],
        "thermal": ["Device: /dev/{disk} [SAT], Temperature {temp_hi} Celsius reaches critical "
                    "limit 60 Celsius (Min/Max 25/70)"],
    }),
    "logrotate": Family(["logrotate"], {
        "normal": [
            "rotating pattern: {path}/*.log  after 1 days (7 rotations)",
            "considering log {path}/{logfile}", "  log does not need rotating",
            "rotating log {path}/{logfile}, log->rotateCount is {n}",
            "compressing log with: /bin/gzip", "renaming {path}/{logfile}.1 to "
            "{path}/{logfile}.2", "removing old log {path}/{logfile}.8.gz",
        ],
        "storage": ["error: failed to compress log {path}/{logfile}.1: No space left on device",
                    "error: error creating output file {path}/{logfile}.1: Read-only file "
                    "system"],
    }),
    "apt": Family(["apt", "apt-get", "dpkg", "packagekitd"], {
        "normal": [
            "Unpacking {pkg}:{arch} ({ver}) over ({ver2}) ...", "Setting up {pkg}:{arch} "
            "({ver}) ...", "Preparing to unpack .../{pkg}_{ver}_{arch}.deb ...",
            "Processing triggers for {pkg} ({ver}) ...", "Selecting previously unselected "
            "package {pkg}.", "{n} upgraded, {n} newly installed, 0 to remove and {n} not "
            "upgraded.", "Fetched {n} kB in {n}s ({n} kB/s)", "Reading package lists...",
            "Get:{n} {url} bookworm/main {arch} {pkg} {arch} {ver} [{n} kB]",
        ],
        "network": ["E: Failed to fetch {url}  Temporary failure resolving '{host}'",
                    "W: Some index files failed to download. They have been ignored"],
        "software": ["dpkg: error processing package {pkg} (--configure):",
                     "E: Sub-process /usr/bin/dpkg returned an error code (1)",
                     "Errors were encountered while processing: {pkg}"],
    }),
    "kernel-boot": Family(["kernel"], {
        "normal": [
            "Booting Linux on physical CPU 0x0", "Linux version {ver}-v8+ (builder@buildhost) "
            "(gcc version 12.2.0) #1 SMP PREEMPT", "Machine model: {board}",
            "Memory: {n}K/{n}K available ({n}K kernel code, {n}K rwdata, {n}K reserved)",
            "random: crng init done", "usb {usb}: New USB device found, idVendor={hex4}, "
            "idProduct={hex4}, bcdDevice= {n}.00", "usb {usb}: new high-speed USB device "
            "number {n} using xhci_hcd", "usb {usb}: Product: {product}",
            "cdc_acm {usb}:1.0: ttyACM0: USB ACM device", "ftdi_sio {usb}:1.0: FTDI USB Serial "
            "Device converter detected", "Adding {n}k swap on /var/swap.",
            "EXT4-fs ({dev}): mounted filesystem with ordered data mode. Quota mode: none.",
            "bcmgenet fd580000.ethernet eth0: Link is Up - 1Gbps/Full - flow control rx/tx",
            "Bluetooth: Core ver 2.22", "cfg80211: Loading compiled-in X.509 certificates for "
            "regulatory database", "NET: Registered PF_INET6 protocol family",
            "Freeing unused kernel memory: {n}K", "Run /sbin/init as init process",
            "clocksource: Switched to clocksource arch_sys_counter", "i2c_dev: i2c /dev "
            "entries driver", "spi-bcm2835 fe204000.spi: registered, {n} chip selects",
            "CPU features: detected: 32-bit EL0 Support", "hwmon hwmon{n}: probe succeeded",
            "thermal_sys: Registered thermal governor 'step_wise'",
            "brcmfmac: F1 signature read @0x18000000=0x15264345", "watchdog: watchdog0: "
            "timeout {n} sec, nowayout=0", "rtc-ds1307 1-0068: registered as rtc0",
            "mmc{n}: new high speed SDHC card at address {hex4}", "mmcblk{n}: mmc{n}:{hex4} "
            "{card} {n}.{n} GiB", "usbcore: registered new interface driver {driver}",
            "{iface}: authenticate with {mac}", "{iface}: send auth to {mac} (try 1/3)",
            "{iface}: authenticated", "{iface}: associate with {mac} (try 1/3)",
            "{iface}: RX AssocResp from {mac} (capab=0x431 status=0 aid={n})",
            "{iface}: associated", "{iface}: Link is Up - 100Mbps/Full - flow control off",
        ],
        "software": ["watchdog: BUG: soft lockup - CPU#{n} stuck for {n}s! [{proc}:{pid}]",
                     "rcu: INFO: rcu_sched detected stalls on CPUs/tasks",
                     "Kernel panic - not syncing: Attempted to kill init!",
                     "INFO: task {proc}:{pid} blocked for more than 120 seconds."],
        "storage": ["mmc0: Timeout waiting for hardware interrupt.",
                    "blk_update_request: I/O error, dev {dev}, sector {sector} op 0x1:(WRITE)",
                    "EXT4-fs warning (device {dev}): ext4_end_bio: I/O error 10 writing to "
                    "inode {n}"],
        "hardware": ["usb {usb}: device descriptor read/64, error -110",
                     "usb {usb}: device not accepting address {n}, error -71"],
    }),
    "network-manager": Family(["NetworkManager", "wpa_supplicant", "mosquitto", "rsyslogd"], {
        "normal": [
            "<info>  [{nmts}] device ({iface}): state change: {nm_from} -> {nm_to} "
            "(reason 'none', sys-iface-state: 'managed')",
            "<info>  [{nmts}] dhcp4 ({iface}): state changed new lease, address={ip}",
            "<info>  [{nmts}] manager: NetworkManager state is now CONNECTED_GLOBAL",
            "<info>  [{nmts}] device ({iface}): Activation: successful, device activated.",
            "{iface}: CTRL-EVENT-CONNECTED - Connection to {mac} completed [id=0 id_str=]",
            "{iface}: Trying to associate with SSID '{ssid}'", "{iface}: Associated with {mac}",
            "{iface}: WPA: Key negotiation completed with {mac} [PTK=CCMP GTK=CCMP]",
            "{iface}: CTRL-EVENT-SIGNAL-CHANGE above=1 signal=-{sig} noise=9999 txrate=65000",
            "New client connected from {ip}:{port} as {client} (p2, c1, k60).",
            "New connection from {ip}:{port} on port 1883.", "Client {client} disconnected.",
            "Saving in-memory database to /var/lib/mosquitto/mosquitto.db.",
            "Opening ipv4 listen socket on port 1883.", "mosquitto version 2.0.11 starting",
            "[origin software=\"rsyslogd\" swVersion=\"{ver}\" x-pid=\"{pid}\" "
            "x-info=\"https://www.rsyslog.com\"] start",
            "[origin software=\"rsyslogd\" swVersion=\"{ver}\" x-pid=\"{pid}\"] rsyslogd was "
            "HUPed",
        ],
        "network": [
            "<warn>  [{nmts}] device ({iface}): link timed out",
            "<warn>  [{nmts}] dhcp4 ({iface}): request timed out",
            "<info>  [{nmts}] device ({iface}): state change: activated -> unavailable "
            "(reason 'carrier-changed', sys-iface-state: 'managed')",
            "<info>  [{nmts}] manager: NetworkManager state is now DISCONNECTED",
            "{iface}: CTRL-EVENT-DISCONNECTED bssid={mac} reason=4",
            "{iface}: CTRL-EVENT-BEACON-LOSS", "{iface}: CTRL-EVENT-SSID-TEMP-DISABLED id=0 "
            "ssid=\"{ssid}\" auth_failures=1 duration=10 reason=CONN_FAILED",
            "Client {client} has exceeded timeout, disconnecting.",
            "Socket error on client {client}, disconnecting.",
        ],
        "security": ["Client {client} disconnected, not authorised.",
                     "OpenSSL Error[0]: error:0A000418:SSL routines::tlsv1 alert unknown ca"],
    }),
    "app": Family(["pumpd", "valved", "chillerd", "doserd", "mixerd", "kilnd", "compressord",
                   "plc-bridge", "opcua-server", "scada-link", "loggerd", "node-red",
                   "edge-agent", "sensord", "modbusd"], {
        "normal": [
            "controller ready, firmware {ver}, mode={mode}", "{component} ready",
            "cycle {n} complete, {stats}", "starting, version {ver} (build {n})",
            "{app} {ver} starting", "{app} v{ver} (git {hex4}) up, pid {pid}",
            "loaded configuration from {cfgpath}", "configuration reloaded from {cfgpath}",
            "listening on {ip}:{port}", "polling {n} slaves every {ms} ms",
            "mode changed to {mode} by {actor}", "setpoint {value} reached after {n} s",
            "{actuator} {n} {actuated}", "recipe '{recipe}' loaded, {n} steps",
            "shift counter reset, {n} units produced", "stats: {stats}",
            "{component} initialized in {ms} ms", "{component} {did} {n} {things}",
            "initialization complete", "received SIGTERM, shutting down gracefully",
            "opened {tty} at {baud} baud, 8N1", "modbus slave {n} online",
            "subscribed to {topic}", "published {n} readings to {topic}",
            "firmware {ver} on controller {n}, serial {hex}", "batch {n} done in {ms} ms, {stats}",
            "health check passed ({n} checks)", "state: {mode}, {stats}",
            "uptime {n} h, {stats}", "[info] Started flows", "[info] Server now running at "
            "http://127.0.0.1:1880/", "[info] [mqtt-broker:broker] Connected to broker: "
            "mqtt://{ip}:1883", "license valid, {n} days left", "cleanup removed {n} old files",
        ],
        "hardware": ["vibration {value} mm/s above alarm limit on {actuator} {n}",
                     "{actuator} {n} did not reach position within {ms} ms",
                     "leak detected at {actuator} {n}, isolating", "encoder fault on axis {n}",
                     "motor {n} stalled, drive tripped", "bearing fault suspected on motor {n}",
                     "{actuator} {n} feedback mismatch: commanded open, reads closed"],
        "thermal": ["motor {n} winding temperature {temp_hi} C, derating",
                    "cabinet over temperature ({temp_hi} C), stopping {actuator}s"],
        "power": ["supply {volt_lo} V below minimum, {actuator}s disabled",
                  "motor {n} overcurrent {value} A, drive tripped"],
        "sensor": ["{sensor} reading frozen for {n} min, marking invalid",
                   "modbus slave {n}: no response to read of register {n}"],
        "network": ["[error] [mqtt-broker:broker] Connection failed to broker: mqtt://{ip}:1883",
                    "lost connection to {peer} at {ip}:{port}, retrying in {n} s"],
        "software": ["[error] [function:parse] TypeError: Cannot read properties of undefined",
                     "worker {n} crashed: {exc}", "unhandled exception, restarting {component}"],
    }),
}

FAMILY_FILLERS: dict[str, list[str]] = {
    "card": ["SC16G", "SD32G", "EB1QT", "USD00", "BC1S5"],
    "driver": ["usbfs", "hub", "cdc_acm", "ftdi_sio", "r8152", "uvcvideo", "brcmfmac"],
    "command": ["/usr/bin/systemctl restart pumpd", "/usr/bin/apt update", "/usr/bin/journalctl "
                "-u pumpd", "/bin/cat /var/log/syslog", "/usr/sbin/reboot"],
    "ups": ["eaton@localhost", "apc", "ups1", "myups"],
    "disk": ["sda", "sdb", "nvme0n1", "mmcblk0"],
    "unit": ["pumpd.service", "apt-daily.service", "logrotate.service", "man-db.service",
             "nanofleet-agent.service", "ssh.service", "getty@tty1.service", "modbusd.service",
             "fstrim.service", "user@1000.service", "session-{n}.scope"],
    "unit_desc": ["Pump controller service", "Daily apt download activities",
                  "Daily apt upgrade and clean activities", "Rotate log files",
                  "Daily man-db regeneration", "Session {n} of user {user}",
                  "OpenBSD Secure Shell server", "Discard unused blocks on filesystems",
                  "Modbus bridge", "User Manager for UID {n}", "Load Kernel Modules",
                  "Remount Root and Kernel File Systems", "Cleanup of Temporary Directories",
                  "Getty on tty1", "Hostname Service", "Nanofleet device agent"],
    "target": ["Multi-User System", "Network is Online", "Graphical Interface", "Timers",
               "Basic System", "Sockets", "Local File Systems", "Time Set", "Shutdown"],
    "mount": ["/boot/firmware", "/data", "Temporary Directory /tmp", "Kernel Debug File "
              "System", "/var/log"],
    "socket_desc": ["D-Bus System Message Bus Socket", "Journal Socket", "udev Kernel Socket",
                    "triggerhappy.socket - Triggerhappy Socket"],
    "slice": ["User Slice of UID {n}", "system-getty.slice", "system-modprobe.slice"],
    "cmd": ["   cd / && run-parts --report /etc/cron.hourly", "/usr/local/bin/upload.sh",
            "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )",
            "/opt/app/bin/rotate --quiet", "[ -x /usr/lib/php/sessionclean ] && "
            "/usr/lib/php/sessionclean"],
    "keytype": ["RSA", "ED25519", "ECDSA"],
    "arch": ["arm64", "armhf", "amd64", "all"],
    "url": ["http://deb.debian.org/debian", "http://archive.raspberrypi.com/debian",
            "http://security.debian.org/debian-security"],
    "client": ["sensor-3", "edge-agent-pump-07", "auto-3F2A", "node-red", "telegraf-1"],
    "board": ["Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi Compute Module 4 Rev 1.0",
              "NXP i.MX8MPlus EVK board", "BeagleBone Black"],
    "product": ["FT232R USB UART", "Huawei Mobile", "USB2.0 Hub", "CP2102 USB to UART Bridge"],
    "nm_from": ["prepare", "config", "ip-config", "ip-check", "secondaries", "disconnected"],
    "nm_to": ["config", "ip-config", "ip-check", "secondaries", "activated", "prepare"],
    "logfile": ["syslog", "daemon.log", "pumpd.log", "auth.log", "messages"],
    "mode": ["auto", "manual", "eco", "standby", "remote", "local", "maintenance", "running"],
    "actor": ["schedule 'night'", "operator", "HMI", "remote command", "timer"],
    "app": ["pumpd", "valved", "chillerd", "doserd", "plc-bridge", "opcua-server", "loggerd"],
    "cfgpath": ["/etc/pumpd.conf", "/etc/app/config.yaml", "/opt/plant/settings.toml",
                "/etc/default/valved", "/var/lib/app/runtime.json"],
    "component": ["scheduler", "uploader", "rules engine", "http server", "modbus master",
                  "opc-ua client", "historian", "data logger", "fan controller",
                  "battery monitor", "disk monitor", "thermal policy", "usb hub driver",
                  "sensor bus", "power manager", "network watcher", "security module",
                  "watchdog", "storage pool", "cache", "worker pool", "gpio handler"],
    "did": ["loaded", "registered", "flushed", "scanned", "found", "synced", "restored",
            "queued", "processed", "cleaned"],
    "things": ["entries", "handlers", "records", "devices", "timers", "tags", "rules",
               "files", "messages", "points"],
    "actuator": ["valve", "pump", "fan", "heater", "motor", "damper", "relay", "conveyor"],
    "actuated": ["opened", "closed", "started", "stopped (schedule)", "switched on",
                 "switched off", "at 60 %"],
    "recipe": ["summer", "cip-rinse", "batch-A", "default", "night-eco"],
    "topic": ["sensors/pump-07/pump", "plant/line1/state", "devices/+/telemetry", "tele/#"],
    "tty": ["/dev/ttyUSB0", "/dev/ttyAMA0", "/dev/ttyS1", "/dev/ttyACM0"],
    "baud": ["9600", "19200", "115200"],
    "peer": ["historian", "plc-1", "scada", "cloud bridge", "opc-ua server"],
    "stats": ["flow={value} l/min, pressure={value} bar", "queue=0 sent={n} dropped=0",
              "rpm={rpm}, current={value} A", "cpu={pct_low}% mem={pct_low}%",
              "tank={pct}% dosing={value} ml", "records={n} errors=0 retries=0",
              "temp={temp} C, humidity={pct} %", "duration_ms={ms} rows={n}"],
}
