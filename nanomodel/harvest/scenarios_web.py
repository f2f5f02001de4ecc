"""Capture scenarios for web servers: apache2 and nginx, error logs sent to syslog.

Each server runs in the server namespace with its own configuration (nothing of
``/etc/apache2`` or ``/etc/nginx`` is used), serves a small site with a reverse-proxied
API (one backend healthy, one too slow, one down), a CGI script that fails, a
password-protected and a denied directory; visitors come from the client-side addresses
(:mod:`nanomodel.harvest.http_client`). Each server starts, serves, reloads gracefully,
serves again and stops, so its lifecycle lines are captured too.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SRV,
    Proc,
    _stop_pidfile,
    in_mount_ns,
    marker,
    run_in,
    start_in,
    stop,
)

CLIENT = Path(__file__).with_name("http_client.py")
_BACKEND = """
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if 'slow' in self.path:
            time.sleep(4)
        body = b'{"ok": true}'
        self.send_response(200); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', 8081), H).serve_forever()
"""


def _site(work: Path) -> Path:
    """The site as ``/var/www`` will show it (html, cgi-bin, .htpasswd), under ``work/web``."""
    web = work / "web"
    shutil.rmtree(web, ignore_errors=True)
    www = web / "var-www"
    for d in ("html/docs", "html/images", "html/private", "html/uploads", "html/admin", "cgi-bin"):
        (www / d).mkdir(parents=True)
    for f in (
        "index.html",
        "style.css",
        "app.js",
        "status.json",
        "docs/index.html",
        "images/logo.png",
        "private/keys.txt",
        "admin/index.html",
        "uploads/a.bin",
    ):
        (www / "html" / f).write_text(f"{f}\n")
    cgi = www / "cgi-bin" / "report.sh"
    cgi.write_text(
        "#!/bin/sh\necho 'report.sh: cannot open /var/lib/report/state.db' >&2\nexit 1\n"
    )
    cgi.chmod(0o755)
    subprocess.run(
        ["htpasswd", "-b", "-c", str(www / ".htpasswd"), "operator", "s3cret"],
        check=True,
        capture_output=True,
    )
    (www / ".htpasswd").chmod(0o644)
    return web


def _traffic(port: int, rounds: int, seed: int) -> None:
    run_in(
        CLI,
        sys.executable,
        str(CLIENT),
        SERVER,
        str(port),
        str(rounds),
        str(seed),
        *CLIENT_HOSTS,
        timeout=400,
    )


_APACHE_MODULES = (
    "mpm_event",
    "authz_core",
    "authz_host",
    "authn_core",
    "authn_file",
    "auth_basic",
    "authz_user",
    "dir",
    "mime",
    "alias",
    "autoindex",
    "cgid",
    "proxy",
    "proxy_http",
    "status",
    "reqtimeout",
    "setenvif",
)


def apache2(work: Path) -> list[Proc]:
    web = _site(work)
    run, etc = web / "run-apache2", web / "etc-apache2"
    run.mkdir()
    etc.mkdir()
    conf = etc / "apache2.conf"
    www = "/var/www/html"
    modules = "\n".join(
        f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in _APACHE_MODULES
    )
    conf.write_text(f"""ServerRoot /etc/apache2
{modules}
ServerName gateway.site.lan
Listen {SERVER}:80
PidFile /run/apache2/apache2.pid
DefaultRuntimeDir /run/apache2
ScriptSock /run/apache2/cgisock
User www-data
Group www-data
ErrorLog syslog:local7
LogLevel info
TypesConfig /etc/mime.types
DocumentRoot {www}
RequestReadTimeout header=3 body=5
ProxyTimeout 2
<Directory />
    Require all denied
</Directory>
<Directory {www}>
    Options -Indexes
    Require all granted
    DirectoryIndex index.html
</Directory>
<Directory {www}/private>
    Require all denied
</Directory>
<Directory {www}/admin>
    AuthType Basic
    AuthName "admin"
    AuthUserFile /var/www/.htpasswd
    Require valid-user
</Directory>
ScriptAlias /cgi-bin/ /var/www/cgi-bin/
<Directory /var/www/cgi-bin>
    Options +ExecCGI
    Require all granted
</Directory>
ProxyPass /api/ http://127.0.0.1:8081/
ProxyPass /legacy/ http://127.0.0.1:8089/
<Location /server-status>
    SetHandler server-status
    Require ip 127.0.0.1
</Location>
""")
    marker("apache2 in netns: API backend starts")
    backend = start_in(SRV, "python3", "-c", _BACKEND)
    marker("apache2 in netns: start")
    binds = {web / "var-www": "/var/www", etc: "/etc/apache2", run: "/run/apache2"}
    run_in(SRV, *in_mount_ns(binds, "exec /usr/sbin/apache2 -k start"))
    time.sleep(2)
    marker("apache2 in netns: visitors, probes and failing parts")
    _traffic(80, 450, 80)
    marker("apache2 in netns: graceful reload (SIGUSR1)")
    _stop_pidfile(run / "apache2.pid", signal.SIGUSR1)
    time.sleep(2)
    marker("apache2 in netns: more visitors after the reload")
    _traffic(80, 200, 81)
    marker("apache2 in netns: restart (SIGHUP)")
    _stop_pidfile(run / "apache2.pid", signal.SIGHUP)
    time.sleep(2)
    _traffic(80, 60, 82)
    marker("apache2 in netns: stop (SIGTERM)")
    _stop_pidfile(run / "apache2.pid")
    time.sleep(2)
    stop(backend)
    return []


def nginx(work: Path) -> list[Proc]:
    web = _site(work)
    run, etc = web / "run-nginx", web / "etc-nginx"
    run.mkdir()
    etc.mkdir()
    shutil.copy("/etc/nginx/mime.types", etc / "mime.types")
    conf = etc / "nginx.conf"
    conf.write_text(f"""worker_processes 2;
pid /run/nginx/nginx.pid;
user www-data;
error_log syslog:server=unix:/dev/log,facility=local7,tag=nginx,nohostname info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    include /etc/nginx/mime.types;
    client_header_buffer_size 1k;
    large_client_header_buffers 2 2k;
    client_header_timeout 3s;
    proxy_read_timeout 2s;
    proxy_connect_timeout 2s;
    server {{
        listen {SERVER}:8080;
        server_name gateway.site.lan;
        root /var/www/html;
        index index.html;
        location /private/ {{ deny all; }}
        location /admin/ {{
            auth_basic "admin";
            auth_basic_user_file /var/www/.htpasswd;
        }}
        location /api/ {{ proxy_pass http://127.0.0.1:8081/; }}
        location /legacy/ {{ proxy_pass http://127.0.0.1:8089/; }}
        location /cgi-bin/ {{ proxy_pass http://10.77.0.99:9000/; }}
    }}
}}
""")
    marker("nginx in netns: API backend starts")
    backend = start_in(SRV, "python3", "-c", _BACKEND)
    marker("nginx in netns: start")
    binds = {web / "var-www": "/var/www", etc: "/etc/nginx", run: "/run/nginx"}
    server = start_in(SRV, *in_mount_ns(binds, "exec nginx -e stderr -g 'daemon off;'"))
    time.sleep(2)
    marker("nginx in netns: visitors, probes and failing parts")
    _traffic(8080, 450, 90)
    marker("nginx in netns: reload (SIGHUP)")
    server.send_signal(signal.SIGHUP)
    time.sleep(2)
    marker("nginx in netns: more visitors after the reload")
    _traffic(8080, 200, 91)
    marker("nginx in netns: reopen log files (SIGUSR1)")
    server.send_signal(signal.SIGUSR1)
    time.sleep(1)
    marker("nginx in netns: graceful stop (SIGQUIT)")
    stop(server, signal.SIGQUIT)
    stop(backend)
    return []
