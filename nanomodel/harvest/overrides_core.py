"""Reviewed per-template decisions that the general rules get wrong, for the core
sources (web servers, OpenSSH, systemd and its daemons, the network and time daemons,
...), kept with the harvest so every run decides them the same way (registered in
:data:`nanomodel.harvest.overrides.OVERRIDES`; the classic server daemons' are in
:mod:`nanomodel.harvest.overrides_classic`, the RAS reporters' in
:mod:`nanomodel.harvest.expansions_hpc`)."""

from __future__ import annotations

# (source, regex over the template, label, reason)
CORE_OVERRIDE_ROWS: list[tuple[str, str, str, str]] = [
    (
        "systemd",
        r" was skipped because (?:of an unmet condition check|no trigger condition)",
        "normal",
        "a unit skipped by its own condition (ConditionPathExists=, ...): what its unit "
        "file asks for, whatever its description says ('if dbus ... are not available')",
    ),
    (
        "systemd",
        r"^(?:%\{unit\}|\S+): Killing process (?:i|\d+) \(.*\) with signal SIG",
        "normal",
        "one process of a unit being stopped or killed; why (a stop that timed out, a "
        "watchdog) is its own line, which carries the alert",
    ),
    (
        "systemd",
        r"^(?:Failed to parse|Invalid) [^,]*, ignoring",
        "normal",
        "one setting of a unit file cannot be parsed and is ignored; the unit runs without "
        "it (as the review decided for unknown keys: a note for whoever wrote the file)",
    ),
    (
        "systemd",
        r"^Shutting down\.$",
        "normal",
        "the manager begins a shutdown or reboot someone asked for",
    ),
    (
        "systemd",
        r"^(?:%\{unit\}|\S+): Deactivated successfully\.$",
        "normal",
        "a unit ended cleanly, whatever its name says ('broken-unit.service')",
    ),
    (
        "nginx",
        r"gracefully shutting down",
        "normal",
        "a routine stop or reload of nginx (logged at notice; 'down' is not a failure here)",
    ),
    (
        "apache2",
        r"caught SIG(?:TERM|WINCH|HUP|USR1)\b[^,]*, shutting down",
        "normal",
        "a routine stop or graceful restart of Apache",
    ),
    (
        "openvpn",
        r"Interrupted system call",
        "normal",
        "a wait interrupted by the signal that stops or restarts the daemon",
    ),
    (
        "openvpn",
        r"^Could not determine IPv4/IPv6 protocol",
        "normal",
        "a fallback to IPv4 that needs nobody",
    ),
    (
        "dnsmasq",
        r"\bHWM\b",
        "normal",
        "a statistics line (high-water mark of a counter), printed on request",
    ),
    (
        "openssh",
        r"beginning MaxStartups throttling",
        "network",
        "too many unauthenticated connections at once: sshd starts dropping new ones "
        "(as its reviewed siblings 'in MaxStartups throttling' and 'past MaxStartups')",
    ),
    (
        "openssh",
        r"^Invalid user",
        "security",
        "a login attempt for a user that does not exist",
    ),
    (
        "openssh",
        r"^User %\S+ from %\S+ not allowed",
        "security",
        "a login refused by policy",
    ),
    (
        "openssh",
        r"^(error: )?Bad packet length|^(error: )?Corrupted MAC",
        "security",
        "tampered or corrupted traffic on an SSH connection",
    ),
    (
        "openssh",
        r"^(fatal: )?Timeout before authentication",
        "normal",
        "a client that never finished logging in: routine noise",
    ),
    (
        "mosquitto",
        r"^Client %s (disconnected\.$|closed its connection|has exceeded timeout)",
        "normal",
        "a client went away; brokers see this all day",
    ),
    (
        "mosquitto",
        r"^Client %s disconnected due to (protocol error|malformed packet)",
        "normal",
        "a client (or a scanner) spoke bad MQTT and was dropped; the broker is fine",
    ),
    (
        "mosquitto",
        r"^Client %s already connected, closing old connection",
        "normal",
        "a client reconnected before its old connection timed out: routine on flaky links",
    ),
    (
        "mosquitto",
        r"^(New connection from|New client connected)",
        "normal",
        "a client connected",
    ),
    # ZooKeeper 3.8 at INFO echoes its settings at every start; the words "timeout" and
    # "shutdown" in a setting's name are not failures (read on a captured ensemble)
    (
        "zookeeper",
        r"^[a-z][\w.]*(?: set to|\s*=|\s*:)\s*-?[\w.{}]+(?: ms)?$"
        r"|^Configuring NIO connection handler with ",
        "normal",
        "a setting echoed at start",
    ),
    (
        "zookeeper",
        r"^[Ss]hutting down$",
        "normal",
        "a server leaving its role (election, restart); the cause, if any, is its own line",
    ),
    (
        "zookeeper",
        r"^(?:accepted|current)Epoch not found! Creating with a reasonable default",
        "normal",
        "the first start of a server with an empty data directory",
    ),
    (
        "zookeeper",
        r"^Txnlog size: \S+ exceeds sizeLimit: ",
        "normal",
        "the leader sends a lagging follower a snapshot instead of a diff: routine resync",
    ),
    (
        "zookeeper",
        r"^Unable to load jetty, not starting JettyAdminServer",
        "normal",
        "the optional HTTP admin server is off (Debian's class path has no Jetty servlet "
        "jars); the service works",
    ),
    (
        "zookeeper",
        r"^Unexpected exception$",
        "normal",
        "NIOServerCnxn's EndOfStreamException: a client went away without closing its "
        "session; servers see this all day",
    ),
    (
        "zookeeper",
        r"^Notification time out: (?:[1-5]?\d{1,3}|6[0-3]\d\d)(?: ms)?$",
        "normal",
        "an election waiting a few seconds for votes: routine while servers start or rejoin",
    ),
    (
        "zookeeper",
        r"^Notification time out: ",
        "network",
        "an election that has waited 6 s or more: this server cannot reach a quorum of peers",
    ),
    (
        "zookeeper",
        r"^Exception when following the leader|^Exception when using channel: ",
        "network",
        "a follower lost its leader, or a peer's channel broke: a server went away",
    ),
    # the classic-server capture: lines no harvested template explains
    (
        "pam",
        r"^pam_ftp\([^)]*\): conversation failed",
        "normal",
        "pam_ftp is asked first on every FTP login (Debian's PAM stack for ftpd) and gives way "
        "for a named user: routine",
    ),
    (
        "pam",
        r"^pam_listfile\([^)]*\): Refused user",
        "security",
        "a login refused by an access list (root on FTP): a denied access",
    ),
    (
        "logrotate",
        r"^ALERT exited abnormally",
        "software",
        "Debian's nightly logrotate job failed: some logs were not rotated and keep growing",
    ),
]
