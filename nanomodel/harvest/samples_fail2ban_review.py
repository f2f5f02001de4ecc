"""A person's decisions for fail2ban's test logs (read by :mod:`.samples_fail2ban`).

Everything here was decided by reading the lines (December 2026, one reviewer) against
LABELLING.md's question, *would a technician looking after this machine want to be
told?*, and against the project's earlier decisions for the same messages (LABELLING.md
"Decisions worth knowing", "Web servers' client requests"), so that a fail2ban line does
not contradict a captured line or a reviewed template that says the same thing.

fail2ban bans on a line when it is evidence against the *client*, sometimes only in
context (the n-th line of a session that failed before) or in its ``ddos``/``aggressive``
modes (scanners that connect and leave). The project labels the line itself: a scanner's
goodbye, a 404 and a TLS handshake a client botched are routine (``normal``) there, while
failed and refused logins, access denied by policy and visible attack payloads are
``security``. Decisions with ``for_match_true`` overrule fail2ban's ``match: true``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# fail2ban filter (test file name) → our source (daemon family); "" = left out, and why
WEB_APPS = {
    # web applications' own logs (PHP/JS/Java apps, admin panels), not daemons a device
    # or server runs, and two that are not a server's log at all (a game server's console,
    # a honeypot's JSON events)
    "bitwarden", "vaultwarden", "centreon", "directadmin", "drupal-auth", "froxlor-auth",
    "gitlab", "grafana", "groupoffice", "guacamole", "horde", "monitorix", "openhab",
    "openwebmail", "phpmyadmin-syslog", "roundcube-auth", "sogo-auth", "squirrelmail",
    "suhosin", "tine20", "webmin-auth", "zoneminder", "counter-strike", "cowrie",
}
NOT_SOFTWARE = {
    # fail2ban's example filter: a made-up program ("test-demo ... F2B: failure from")
    "zzz-generic-example",
    # only an "addFILE" of the sshd file, for an obsolete filter
    "zzz-sshd-obsolete-multiline",
}
FILTER_SOURCE: dict[str, str] = {
    "sshd": "openssh", "sshd-journal": "openssh", "selinux-ssh": "openssh",
    "dropbear": "dropbear", "pam-generic": "pam", "xinetd-fail": "xinetd",
    "apache-auth": "apache2", "apache-badbots": "apache2", "apache-botsearch": "apache2",
    "apache-fakegooglebot": "apache2", "apache-modsecurity": "apache2",
    "apache-nohome": "apache2", "apache-noscript": "apache2", "apache-overflows": "apache2",
    "apache-pass": "apache2", "apache-shellshock": "apache2", "php-url-fopen": "apache2",
    "nginx-bad-request": "nginx", "nginx-botsearch": "nginx", "nginx-forbidden": "nginx",
    "nginx-http-auth": "nginx", "nginx-limit-req": "nginx", "lighttpd-auth": "lighttpd",
    "postfix": "postfix", "sendmail-auth": "sendmail", "sendmail-reject": "sendmail",
    "proftpd": "proftpd", "named-refused": "named", "openvpn": "openvpn",
    # sources new to the project (no templates: every line not banned on is decided below)
    "dovecot": "dovecot", "exim": "exim", "exim-spam": "exim", "vsftpd": "vsftpd",
    "pure-ftpd": "pure-ftpd", "wuftpd": "wu-ftpd", "gssftpd": "gssftpd",
    "courier-auth": "courier", "courier-smtp": "courier",
    "cyrus-imap": "cyrus-imap", "sieve": "cyrus-imap",  # timsieved is Cyrus's
    "uwimap-auth": "uw-imap", "solid-pop3d": "solid-pop3d", "perdition": "perdition",
    "squid": "squid", "3proxy": "3proxy", "dante": "dante", "haproxy-http-auth": "haproxy",
    "traefik-auth": "traefik", "stunnel": "stunnel", "slapd": "slapd",
    "asterisk": "asterisk", "freeswitch": "freeswitch", "murmur": "murmur",
    "ejabberd-auth": "ejabberd", "znc-adminlog": "znc", "mysqld-auth": "mysql",
    "mssql-auth": "mssql", "mongodb-auth": "mongodb", "nsd": "nsd", "nagios": "nrpe",
    "monit": "monit", "proxmox": "proxmox", "routeros-auth": "routeros",
    "screensharingd": "screensharingd", "softethervpn": "softethervpn", "xrdp": "xrdp",
    "oracleims": "oracle-ims", "domino-smtp": "domino", "kerio": "kerio",
    "qmail": "qmail", "assp": "assp", "portsentry": "portsentry", "scanlogd": "scanlogd",
    "recidive": "fail2ban",  # fail2ban's own log: a host banned again and again
    **dict.fromkeys(WEB_APPS | NOT_SOFTWARE, ""),
}
# loghub's SSH and Linux logs come from these hosts: never take a line of theirs
LOGHUB_HOSTS = frozenset({"LabSZ", "combo"})

_ATTACK = {
    "apache-botsearch", "apache-noscript", "apache-overflows", "apache-shellshock",
    "apache-modsecurity", "apache-badbots", "apache-fakegooglebot", "apache-nohome",
    "php-url-fopen", "nginx-botsearch", "nginx-bad-request", "nginx-limit-req",
    "scanlogd", "portsentry", "exim-spam", "recidive",
}
_REFUSED = {
    "named-refused", "nsd", "nagios", "xinetd-fail", "postfix", "sendmail-reject", "kerio",
    "qmail", "squid", "3proxy", "nginx-forbidden", "apache-pass", "stunnel", "assp",
}
MATCH_TRUE_WHAT: dict[str, str] = {
    **dict.fromkeys(_ATTACK, "an attack (a scanner, an exploit attempt, a flood or spam)"),
    **dict.fromkeys(_REFUSED, "a refused client"),
}
# a banned line of any other filter says one of these (else: a refused client)
LOGIN_WORDS = re.compile(
    r"(?i)auth\w*[ :(-]+(?:\w+ )?fail|fail\w* (?:\w+ )?(?:login|auth|password|keyboard|"
    r"publickey|hostbased|unknown|to authenticate)|login (?:fail|refused|error|attempt)|"
    r"password|invalid user|user \S* ?not found|unknown user|nonexistent user|"
    r"not allowed because|denied for user|badlogin|was not found in \"|err=49|auth tries|"
    r"res=failed|bad rcon|AUTHFAIL|too many authentication|"
    r"Authentication: FAILED|no such user|can't find user|wrong|"
    r"Invalid (?:admin token|TOTP)|No registration for peer|not authenticated|"
    r"authentication (?:error|failure|methods)|Auth fail|pam_authenticate\(\) failed|"
    r"auth name mismatch"
)


def what_it_bans(filter_name: str, text: str) -> str:
    """What fail2ban's filter sees in a line it bans on, for the row's reason."""
    if filter_name in _ATTACK:
        return MATCH_TRUE_WHAT[filter_name]
    if LOGIN_WORDS.search(text):
        return "a failed login"
    return MATCH_TRUE_WHAT.get(filter_name, "a refused client")


@dataclass(frozen=True)
class Skip:
    """Lines that only exercise fail2ban's parser: crafted, not logged by the software."""

    filter: str  # "" = any filter
    pattern: re.Pattern[str]
    reason: str


PARSER_EXERCISE = (
    Skip("", re.compile(r"(?:\ba: ){8}|(?:\bA ){8}"),
         "a repeated filler crafted against slow regular expressions (GHSA-33wh-ccjc-p397)"),
    Skip("", re.compile(r"\\n\[\d{8}-|\] n\[\d{8}-"),
         "a log-injection test (a second line's text inside the first)"),
    Skip("", re.compile(r"hihoinjection|\[client [\d.]+\] user root not found"),
         "a log-injection test (a client's text imitating a second line)"),
    Skip("", re.compile(
        r"port \d+ ssh\d:? from |ruser (?:X{20,} )?from |invalid user from \S+ from "
        r"|user test [\d.]+ (?:port \d+ )?[\d.]+ |from [\d.]+' from "
    ), "a log-injection test (a user name or ident imitating the rest of the line)"),
    Skip("", re.compile(r"rhost=\S+ (?:user=\S+ )?rhost=|user=criminal, relay=\[.*relay="),
         "a log-injection test (a second address field inside a user name)"),
    Skip("", re.compile(r"Wrong data received: |condition lead to a hypothetical failure"
                        r"|\[8\.8\.8\.8\]\" H=|localhost:8443\"\": was not found"),
         "a log-injection test (foreign input imitating the message)"),
    Skip("ejabberd-auth", re.compile(r"^=INFO REPORT===="),
         "the header line of a multi-line Erlang report (its body is the next line)"),
    Skip("selinux-ssh", re.compile(r'^UID="'),
         "a fragment of an audit record (the enriched fields of the line before)"),
)


@dataclass(frozen=True)
class Decision:
    """A reviewed label for one message shape (``pattern`` searched in the whole line)."""

    source: str  # "" = any source
    pattern: re.Pattern[str]
    label: str
    reason: str
    for_match_true: bool = False  # also overrules fail2ban's "match": true


def _d(source: str, pattern: str, label: str, reason: str, *, true: bool = False) -> Decision:
    return Decision(source, re.compile(pattern), label, reason, true)


_SCANNER = ("a scanner or an old client that connects and leaves, as any reachable server "
            "sees all day (LABELLING.md, SSH: normal); fail2ban bans on it only in its ddos "
            "or aggressive mode")
_SESSION_END = ("the end of a session whose failed logins are their own lines (the alerts); "
                "fail2ban counts it in context")
_404 = ("a client asked for a file that does not exist (404): a public server's routine "
        "(LABELLING.md, web servers' client requests: request:missing-file); fail2ban's "
        "botsearch filters ban the scanners that do it many times")
_BAD_REQUEST = ("a client sent a malformed or undecodable request (4xx): scanners and "
                "broken clients do this all day (request:bad-request)")
_ACCESS_LINE = ("an access-log line of an ordinary request: nothing in it says trouble "
                "(fail2ban bans on the user agent or URL it knows to be a bad bot's)")
_CONTENT = ("a message refused or marked by a content filter (a milter, SpamAssassin): a mail "
            "server's everyday anti-spam work (LABELLING.md, mail servers: content and bot "
            "rejections are normal, refusals as a sender, relay or login security)")
_TLS = ("a client's TLS handshake that failed (a scanner, an old client, plain text on the "
        "TLS port): a client's mistake, normal (LABELLING.md, the classic servers)")

DECISIONS: tuple[Decision, ...] = (
    # --- fail2ban bans, the project's decisions say normal ---------------------------
    _d("openssh", r"Received disconnect from \S+(?: port \d+)?: ?\d+: (?:Bye Bye|Normal Shutdown)",
       "normal", "a client's ordinary goodbye (LABELLING.md, SSH: normal); " + _SESSION_END,
       true=True),
    _d("openssh", r"Connection (?:closed|reset) by (?:authenticating user \S+ )?[\da-f.:]+"
       r"(?: port \d+)?(?: \[preauth\])?$|Disconnected from (?:authenticating user \S+ )?"
       r"[\da-f.:]+ port \d+ \[preauth\]|^closed by [\d.]+ \[preauth\]",
       "normal", "a connection closed before or after authentication (LABELLING.md, SSH: "
       "normal): " + _SCANNER, true=True),
    _d("openssh", r"Did not receive identification string|Bad protocol version identification"
       r"|kex_exchange_identification|banner exchange: |Unable to negotiate|no matching \w+ found"
       r"|Timeout before authentication|Read from socket failed|ssh_dispatch_run_fatal",
       "normal", _SCANNER, true=True),
    _d("openssh", r"Accepted (?:password|publickey) for ", "normal",
       "a successful login; fail2ban counts the other users this connection tried before it "
       "(the failed attempts are their own lines)", true=True),
    _d("apache2", r"File does not exist|not found or unable to stat|Primary script unknown",
       "normal", _404, true=True),
    _d("apache2", r"Invalid (?:URI|method) in request (?!GET /static/\.\.)|request failed: "
       r"(?:URI too long|erroneous characters)|provided via SNI",
       "normal", _BAD_REQUEST, true=True),
    _d("apache2", r"^[\w.]+(?: [\d.]+)? - \S* -? ?\[[^\]]+\]?(?: \S+)? \"(?:GET|POST|HEAD) "
       r"(?!/index\.php\?n=http)", "normal", _ACCESS_LINE, true=True),
    _d("nginx", r"\" 404 \d+ |No such file or directory\)|is not found \(2:", "normal", _404,
       true=True),
    _d("nginx", r"\" 400 \d+ ", "normal", _BAD_REQUEST, true=True),
    _d("nginx", r"SSL_do_handshake\(\) failed|SSL_read\(\) failed", "normal", _TLS, true=True),
    _d("nginx", r"delaying request, excess", "normal",
       "a request served late by the rate limit (a client over its rate; the limit did its "
       "job, nothing was refused)", true=True),
    _d("postfix", r"lost connection after \w+ from|disconnect from \S+ .*commands=|"
       r"HANGUP after \d+ from|COMMAND TIME LIMIT from", "normal",
       "a client leaving or slow (postfix's templates: normal); " + _SESSION_END, true=True),
    _d("postfix", r"milter-reject: |Data command rejected", "normal", _CONTENT, true=True),
    _d("exim", r"SA: Action: flagged as Spam", "normal", _CONTENT, true=True),
    _d("mongodb", r"\] end connection ", "normal",
       "a client connection ending; the failed authentication before it is the alert",
       true=True),
    _d("openvpn", r"SIGUSR1\[soft,connection-reset\] received", "normal",
       "a client instance restarting after its TCP connection was reset; the bad packet "
       "before it is the alert", true=True),
    _d("dovecot", r"\(no auth attempts|disconnected before auth was ready|client didn't finish"
       r" SASL auth|\(disconnected during TLS handshake\)", "normal",
       "a client that connected and left without trying to log in (a scanner, a TLS "
       "handshake it botched): " + _SCANNER.split(", as")[0] + "; fail2ban bans it only in "
       "its aggressive mode", true=True),
    _d("exim", r"no MAIL in SMTP connection from", "normal",
       "a client that connected and never sent mail (postfix's `lost connection after "
       "CONNECT` is normal too)", true=True),
    # --- lines fail2ban does not ban on, no template of the source explains them ------
    _d("openssh", r"POSSIBLE BREAK-IN ATTEMPT", "normal",
       "a client whose reverse DNS does not map back: a misconfigured DNS, not an attack "
       "(fail2ban's authors decided not to ban on it)"),
    _d("openssh", r"not allowed because account is locked|input_userauth_request: invalid user",
       "security", "a login attempt for a locked account / an unknown user"),
    _d("openssh", r"Disconnecting(?::| invalid user \S+ \S+ port \d+:) Too many "
       r"authentication failures", "security",
       "sshd cut a client off after too many failed logins"),
    _d("openssh", r"Connection from [\da-f.:]+(?: port \d+|$)|Postponed publickey"
       r"|SSH: Server;Ltype:",
       "normal", "sshd's verbose record of a connection or a key offered: routine"),
    _d("openssh", r"type=USER_LOGIN .*res=failed", "security",
       "the audit record of a failed SSH login (fail2ban bans on the USER_AUTH/USER_ERR "
       "record of the same attempt instead)"),
    _d("apache2", r"Digest: invalid nonce .* hash is not|AH01776: invalid nonce", "security",
       "a digest login with a forged or stale nonce: a failed login"),
    _d("apache2", r"^[\d.]+ - - - \[", "normal", _ACCESS_LINE),
    _d("dovecot", r"Disconnected: a: ", "normal", "a client's garbage commands"),
    _d("sendmail", r"\.\.\. (?:No such user here|User unknown)$", "security",
       "mail for an unknown local user refused (postfix's `User unknown in local recipient "
       "table` captured here is security)"),
    _d("sendmail", r": from=<[^>]*>, size=\d+, .*nrcpts=0", "normal",
       "sendmail's record of a message that had no accepted recipient: the rejects are "
       "their own lines", true=True),
    _d("ejabberd", r"Accepted connection", "normal", "a client connecting: routine"),
    _d("exim", r"no (?:host name|IP address) found for (?:IP address|host)", "normal",
       "a client whose reverse DNS does not resolve: routine on a mail server (fail2ban "
       "bans on it only in its aggressive mode)", true=True),
    _d("mongodb", r"Failed to authenticate .*AuthenticationFailed", "security",
       "a failed database login (fail2ban bans on the connection line after it)"),
    _d("mongodb", r"connection accepted from|\] end connection |authenticate db: ", "normal",
       "a database connection opening, closing or sending its authenticate command: routine"),
    _d("monit", r"HttpRequest: access denied -- client", "security",
       "monit's web interface refusing a login (fail2ban bans on the next, with the user)"),
    _d("mysql", r"Access denied for user", "security", "a failed database login"),
    _d("nginx", r"connect\(\) failed \(111: Connection refused\) while connecting to upstream",
       "network", "the upstream server refuses connections: the site behind nginx is down"),
    _d("openvpn", r"TCP connection established with|Connection reset, restarting", "normal",
       "a client's TCP connection opening or being reset: routine"),
    _d("openvpn", r"Bad encapsulated packet length from peer", "security",
       "openvpn says it: a packet of impossible length, possibly an active attack on the "
       "TCP link"),
    _d("postfix", r"SASL \S+ authentication failed: (?:Connection lost to authentication"
       r" server|Invalid authentication mechanism)", "security",
       "a failed SMTP login (fail2ban leaves these two reasons to its other modes)"),
    _d("postfix", r"improper command pipelining after", "normal",
       "a client sending commands ahead of the server's replies: a spam engine's habit, but "
       "one line needs nobody (postfix's template: normal)", true=True),
    _d("sendmail", r"did not issue MAIL/EXPN/VRFY/ETRN during connection", "normal",
       "a client that connected and never sent mail (as exim's `no MAIL in SMTP connection` "
       "and postfix's `lost connection after CONNECT`)", true=True),
    _d("assp", r"SSL negotiation with client failed", "normal", _TLS, true=True),
    _d("postfix", r"lost connection after (?:AUTH|DATA) from", "normal",
       "a client leaving mid-session"),
    _d("fail2ban", r"NOTICE +\[\S+\] (?:Ban|Unban) ", "normal",
       "fail2ban's own record of a ban or unban: the attack is in the jail's log; routine "
       "for a server that runs fail2ban (the recidive jail bans on repeats)"),
    _d("routeros", r"log rule changed by", "normal", "an administrator's configuration change"),
    _d("screensharingd", r"Authentication: SUCCEEDED", "normal", "a successful login"),
    _d("slapd", r"ACCEPT from|TLS established|EXT oid=|STARTTLS|BIND dn=|UNBIND|fd=\d+ closed"
       r"|RESULT oid= err=1 text=TLS already started", "normal",
       "slapd's per-operation record of an LDAP session (stats logging): routine"),
    _d("traefik", r"\" (?:401|200) \d+ ", "normal",
       "an access-log line: a browser's first request without credentials (401) or a "
       "served request (200); fail2ban bans on 401s with a user name"),
    _d("haproxy", r" 40[13] \d+ .*\"(?:GET|POST|HEAD) ", "normal",
       "an access-log line of a request answered 401/403 with no user in it: a browser's "
       "first request to a protected page looks the same (request:no-credentials)",
       true=True),
    _d("znc", r"(?:connected|disconnected) (?:to|from) ZNC from", "normal",
       "a user connecting to or leaving the bouncer: routine"),
    _d("oracle-ims", r"Authentication successful", "normal", "a successful SMTP login"),
    _d("freeswitch", r"Rejected by acl .* Falling back to Digest auth", "normal",
       "FreeSWITCH asking a client for digest credentials (debug level): routine"),
    _d("pam", r"authentication failure; logname=", "security", "a failed login (PAM)"),
    _d("pam", r"session opened for user \S+ by \(uid=\d+\)", "normal",
       "a login session opening (pam_unix's older wording, without the user's uid)"),
    _d("domino", r"smtp: .* \d+\.\d+\.\d+\.\d+$", "normal", "an SMTP session record"),
)
