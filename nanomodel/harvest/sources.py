"""Which Debian source packages are harvested, where their log calls are, and how
a call's level is read.

Each :class:`Source` names one daemon family (the unit of leave-one-source-out
evaluation), the unpacked Debian source directory it comes from, the files whose log
calls are read and the call names. ``alert`` is the category an error-level message of
this daemon falls in when no rule in :mod:`nanomodel.harvest.rules` says otherwise.
"""

from __future__ import annotations

from nanomodel.harvest.kernel import KERNEL_CALLS, KERNEL_PATHS, KERNEL_PREFIXES
from nanomodel.harvest.levels import call_level, word_level
from nanomodel.harvest.source import Source
from nanomodel.harvest.sources_classic import CLASSIC_SOURCES
from nanomodel.harvest.sources_hpc import HPC_SOURCES

LEVELS = ("debug", "info", "notice", "warning", "error", "crit")


_SYSTEMD_CALLS = (
    r"log_(debug|info|notice|warning|error|emergency|full|struct)(_errno)?"
    r"|log_(unit|link|device|netdev|dhcp_client|dhcp6_client|ndisc|radv|lldp_rx|"
    r"address|route|neighbor|nexthop|qdisc|tclass|session|seat|job|ipv4acd|"
    r"link_message|syntax|dns_query|dns_transaction)_"
    r"(debug|info|notice|warning|error|full|struct)(_errno)?|log_syntax|log_struct_errno"
    r"|log_unit_struct|log_unit_struct_errno"
)
_SYSTEMD_PREFIXES = {
    r"log_unit_.*": "%{unit}: ",
    r"log_link_.*|log_netdev_.*": "%{iface}: ",
    r"log_device_.*": "%{sysname}: ",
}
SOURCES: list[Source] = [
    Source(
        "openssh",
        "openssh",
        ("*.c",),
        r"(logit|verbose|error|fatal|logdie|sshfatal|do_log2|sigdie|cleanup_exit_msg)(_f|_r|_fr)?"
        r"|debug[23]?(_f|_r|_fr)?|sshpkt_disconnect|packet_disconnect",
        "software",
        exclude=(
            "regress",
            "openbsd-compat",
            "contrib",
            "ssh-keygen",
            "scp",
            "sftp-client",
            "ssh-add",
            "ssh-keyscan",
            "ssh-agent",
            "sftp.c",
            "/ssh.c",
            "clientloop",
            "sshconnect",
            "readconf",
            "mux.c",
            "ssh-pkcs11",
        ),
    ),
    Source(
        "systemd",
        "systemd",
        (
            "src/core/*.c",
            "src/login/*.c",
            "src/shutdown/*.c",
            "src/fsck/*.c",
            "src/sleep/*.c",
            "src/shared/conf-parser.c",
            "src/shared/mount-util.c",
            "src/shared/watchdog.c",
            "src/shared/install.c",
            "src/shared/dissect-image.c",
        ),
        _SYSTEMD_CALLS,
        "software",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-networkd",
        "systemd",
        ("src/network/*.c", "src/libsystemd-network/*.c"),
        _SYSTEMD_CALLS,
        "network",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-resolved",
        "systemd",
        ("src/resolve/*.c",),
        _SYSTEMD_CALLS,
        "network",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-timesyncd",
        "systemd",
        ("src/timesync/*.c",),
        _SYSTEMD_CALLS,
        "network",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-journald",
        "systemd",
        ("src/journal/*.c", "src/libsystemd/sd-journal/*.c"),
        _SYSTEMD_CALLS,
        "software",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-udevd",
        "systemd",
        ("src/udev/*.c",),
        _SYSTEMD_CALLS,
        "hardware",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "systemd-coredump",
        "systemd",
        ("src/coredump/*.c", "src/oom/*.c"),
        _SYSTEMD_CALLS,
        "software",
        prefixes=_SYSTEMD_PREFIXES,
    ),
    Source(
        "networkmanager",
        "network-manager",
        ("src/core/**/*.c",),
        r"_LOG[IWEN]\w*|nm_log_(info|warn|err|dbg)",
        "network",
        exclude=("test", "/tests/", "fuzz", "example", "contrib/", "ppp"),
    ),
    Source("chrony", "chrony", ("*.c",), r"LOG|LOG_FATAL", "network"),
    Source(
        "dhcpcd",
        "dhcpcd5",
        ("src/*.c",),
        r"log(err|errx|warn|warnx|info|infox|debug|debugx)",
        "network",
    ),
    Source(
        "isc-dhcp",
        "isc-dhcp",
        ("client/*.c", "server/dhcp.c", "server/dhcpd.c", "server/dhcpleasequery.c"),
        r"log_(info|error|fatal|debug)",
        "network",
    ),
    Source("mosquitto", "mosquitto", ("src/*.c", "lib/*.c"), r"log__printf", "network"),
    Source(
        "bluez",
        "bluez",
        ("src/*.c", "profiles/**/*.c", "plugins/*.c"),
        r"error|warn|info|btd_(error|warn|info)",
        "hardware",
    ),
    Source("smartmontools", "smartmontools", ("smartd.cpp",), r"PrintOut|MailWarning", "storage"),
    Source(
        "busybox",
        "busybox",
        (
            "networking/udhcp/*.c",
            "sysklogd/*.c",
            "init/*.c",
            "networking/ntpd.c",
            "loginutils/*.c",
            "miscutils/crond.c",
            "networking/ifplugd.c",
            "networking/zcip.c",
            "miscutils/watchdog.c",
            "networking/telnetd.c",
            "networking/inetd.c",
            "networking/httpd.c",
            "networking/dnsd.c",
        ),
        r"bb_(error|perror|info|simple_error|simple_perror|simple_info)_msg(_and_die)?|syslog",
        "software",
    ),
    Source("cron", "cron", ("*.c",), r"log_it|syslog", "software"),
    Source(
        "rsyslog",
        "rsyslog",
        ("runtime/*.c", "tools/*.c", "plugins/im*/*.c", "plugins/om*/*.c"),
        r"LogError|LogMsg",
        "software",
    ),
    Source(
        "sudo",
        "sudo",
        (
            "plugins/sudoers/logging.c",
            "plugins/sudoers/auth/*.c",
            "plugins/sudoers/check.c",
            "plugins/sudoers/sudoers.c",
            "plugins/sudoers/timestamp.c",
        ),
        r"log_warningx?|log_denial|sudo_warnx?|audit_failure|log_failure",
        "security",
    ),
    Source(
        "util-linux",
        "util-linux",
        ("login-utils/*.c", "sys-utils/fstrim.c", "term-utils/agetty.c", "sys-utils/hwclock*.c"),
        r"syslog|warnx?|errx?|log_(err|warn|warnx|errx)",
        "software",
    ),
    Source(
        "pam",
        "pam",
        ("modules/*/*.c", "libpam/*.c"),
        r"pam_syslog|pam_vsyslog|syslog",
        "software",
        exclude=("test", "/tests/", "fuzz", "example", "contrib/", "pam_debug"),
    ),
    Source(
        "e2fsprogs",
        "e2fsprogs",
        (
            "e2fsck/unix.c",
            "e2fsck/journal.c",
            "e2fsck/super.c",
            "resize/main.c",
            "misc/e2scrub*.c",
            "misc/tune2fs.c",
            "misc/mke2fs.c",
        ),
        r"log_out|log_err|fatal_error|com_err|printf|fprintf",
        "storage",
    ),
    Source(
        "wpa_supplicant",
        "wpa",
        ("wpa_supplicant/*.c", "src/rsn_supp/*.c", "src/eapol_supp/*.c", "src/eap_peer/eap.c"),
        r"wpa_msg|wpa_msg_ctrl|wpa_dbg|wpa_printf|wpa_msg_global",
        "network",
    ),
    Source(
        "hostapd",
        "wpa",
        ("hostapd/*.c", "src/ap/*.c"),
        r"hostapd_logger|wpa_msg|wpa_printf|wpa_auth_logger|wpa_auth_vlogger",
        "network",
    ),
    Source("dnsmasq", "dnsmasq", ("src/*.c",), r"my_syslog|die", "network"),
    Source(
        "avahi",
        "avahi",
        ("avahi-daemon/*.c", "avahi-core/*.c", "avahi-autoipd/*.c"),
        r"avahi_log_(info|warn|error|notice|debug)|daemon_log",
        "network",
    ),
    Source(
        "nginx",
        "nginx",
        (
            "src/core/*.c",
            "src/event/*.c",
            "src/os/unix/*.c",
            "src/http/ngx_http_*.c",
            "src/event/modules/ngx_epoll_module.c",
        ),
        r"ngx_log_error|ngx_conf_log_error|ngx_ssl_error",
        "software",
    ),
    Source(
        "lighttpd",
        "lighttpd",
        ("src/*.c",),
        r"log_error|log_perror|log_error_multiline",
        "software",
    ),
    Source(
        "postfix",
        "postfix",
        (
            "src/smtpd/*.c",
            "src/smtp/*.c",
            "src/qmgr/*.c",
            "src/cleanup/*.c",
            "src/master/*.c",
            "src/local/*.c",
            "src/pickup/*.c",
            "src/postscreen/*.c",
            "src/anvil/*.c",
            "src/bounce/*.c",
            "src/tls/*.c",
        ),
        r"msg_(info|warn|error|fatal|panic)",
        "software",
    ),
    Source(
        "proftpd",
        "proftpd-dfsg",
        ("src/*.c", "modules/*.c", "contrib/mod_tls.c", "contrib/mod_ban.c"),
        r"pr_log_pri|pr_log_auth|pr_log_writefile|pr_log_stacktrace",
        "software",
        exclude=("test", "/tests/", "fuzz", "example"),
    ),
    Source(
        "ftpd",
        "inetutils",
        ("ftpd/*.c", "telnetd/*.c", "inetd/*.c", "talkd/*.c"),
        r"syslog|fatal",
        "software",
    ),
    Source("ntpsec", "ntpsec", ("ntpd/*.c", "libntp/*.c"), r"msyslog", "network"),
    Source("openvpn", "openvpn", ("src/openvpn/*.c",), r"msg", "network"),
    Source(
        "zookeeper",
        "zookeeper",
        ("zookeeper-server/src/main/java/**/*.java",),
        r"LOG\.(info|warn|error|trace)|LOGGER\.(info|warn|error)",
        "software",
        java=True,
    ),
    Source(
        "mdadm",
        "mdadm",
        ("Monitor.c", "mdmon.c", "monitor.c", "managemon.c"),
        r"pr_err|cont_err|syslog",
        "storage",
    ),
    Source(
        "dropbear",
        "dropbear",
        ("*.c", "src/*.c"),
        r"dropbear_log|dropbear_exit|dropbear_close",
        "software",
    ),
    Source("watchdog", "watchdog", ("src/*.c",), r"log_message|fatal_error", "hardware"),
    Source("logrotate", "logrotate", ("*.c",), r"message", "software"),
    Source(
        "apache2",
        "apache2",
        (
            "server/*.c",
            "server/mpm/event/*.c",
            "server/mpm/prefork/*.c",
            "modules/http/*.c",
            "modules/ssl/*.c",
            "modules/proxy/mod_proxy.c",
            "modules/proxy/proxy_util.c",
            "modules/proxy/mod_proxy_http.c",
            "modules/aaa/*.c",
            "modules/mappers/*.c",
            "modules/generators/mod_cgid.c",
            "modules/generators/mod_autoindex.c",
            "modules/filters/mod_reqtimeout.c",
            "modules/core/*.c",
        ),
        r"ap_log_(error|rerror|cerror|perror|cserror)",
        "software",
    ),
    Source(
        "apcupsd",
        "apcupsd",
        ("src/*.c", "src/drivers/*/*.c", "src/lib/*.c"),
        r"log_event|syslog",
        "software",
        tables=True,
    ),
    *HPC_SOURCES,
    *CLASSIC_SOURCES,
    Source(
        "linux",
        "linux",
        ("**/*.c", "**/*.h"),
        KERNEL_CALLS,
        "hardware",
        prefixes=KERNEL_PREFIXES,
        exclude=("test",),
        path_alert=KERNEL_PATHS,
    ),
]

__all__ = ["LEVELS", "SOURCES", "Source", "call_level", "word_level"]
