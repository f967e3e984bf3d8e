"""The nginx image: Debian's nginx with a per-pod configuration laid out as the official image.

Inside the pod, /etc/nginx/nginx.conf, /etc/nginx/conf.d/default.conf and
/usr/share/nginx/html are the pod's own copies (bind-mounted from the container's run
directory), so `nginx -s reload`, a configMap mounted at /etc/nginx/conf.d or a volume at
/usr/share/nginx/html behave as with the real image. Listens on 80, serves the stock welcome
page, logs requests to stdout and errors to stderr (so `kubectl logs` shows them), keeps its
pid and temp files in the pod's /run and /tmp, runs in the foreground. One worker process per
pod keeps 200 nginx pods on a node affordable. The official image is Debian-based: this one
holds this machine's /usr (Debian's nginx, a shell, coreutils) and nginx's mime.types; its
users are the official image's (nginx, uid 101, for the workers); nginxinc/nginx-unprivileged
runs as 101 and listens on 8080, as upstream.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from pocketkube.node.images import DISTRO_HOLDS, STATIC_DIR, ImageConfig, ImageContext, file_size

NAMES = ("nginx", "nginxinc/nginx-unprivileged", "bitnami/nginx")
HEADLINE = ("nginx",)
NGINX = "/usr/sbin/nginx"
HTML_DIR = "/usr/share/nginx/html"

DEFAULT_SERVER = """\
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"""


NGINX_USER = "nginx:x:101:101:nginx:/nonexistent:/bin/false"
NGINX_GROUP = "nginx:x:101:"
MIME_TYPES = "/etc/nginx/mime.types"
UNPRIVILEGED = "nginxinc/nginx-unprivileged"


def main_config(user: str | None, mime_types: bool, pid: str = "/run/nginx.pid") -> str:
    """nginx.conf of the official image, with pocketkube's paths."""
    lines = []
    if user:
        lines.append(f"user  {user};")
    lines += [
        "worker_processes  1;",
        "",
        "error_log  stderr notice;",
        f"pid        {pid};",
        "",
        "events {",
        "    worker_connections  1024;",
        "}",
        "",
        "http {",
    ]
    if mime_types:
        lines.append("    include       /etc/nginx/mime.types;")
    lines += [
        "    default_type  application/octet-stream;",
        "",
        "    log_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '",
        "                      '$status $body_bytes_sent \"$http_referer\" '",
        "                      '\"$http_user_agent\" \"$http_x_forwarded_for\"';",
        "",
        "    access_log  /dev/stdout  main;",
        "",
        "    client_body_temp_path /tmp/client_temp;",
        "    proxy_temp_path       /tmp/proxy_temp;",
        "    fastcgi_temp_path     /tmp/fastcgi_temp;",
        "    uwsgi_temp_path       /tmp/uwsgi_temp;",
        "    scgi_temp_path        /tmp/scgi_temp;",
        "",
        "    sendfile        on;",
        "    keepalive_timeout  65;",
        "",
        "    include /etc/nginx/conf.d/*.conf;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _html_source(name: str) -> str:
    """Debian's copy of the stock page when installed, else the bundled one."""
    debian = os.path.join(HTML_DIR, name)
    return debian if os.path.isfile(debian) else os.path.join(STATIC_DIR, name)


def prepare_html(html_dir: str) -> None:
    """The pod's own /usr/share/nginx/html (writable, so `echo hi > index.html` stays in the pod)."""
    os.makedirs(html_dir, exist_ok=True)
    for name in ("index.html", "50x.html"):
        target = os.path.join(html_dir, name)
        if not os.path.exists(target):
            shutil.copyfile(_html_source(name), target)


def prepare_logs(log_dir: str) -> None:
    """/var/log/nginx as in the official image: access.log and error.log lead to stdout and
    stderr (Debian's nginx opens error.log before it reads its configuration)."""
    os.makedirs(log_dir, exist_ok=True)
    for name, target in (("access.log", "/dev/stdout"), ("error.log", "/dev/stderr")):
        if not os.path.lexists(os.path.join(log_dir, name)):
            os.symlink(target, os.path.join(log_dir, name))


def image_config(ctx: ImageContext) -> ImageConfig:
    conf = os.path.join(ctx.run_dir, "nginx.conf")
    conf_d = os.path.join(ctx.run_dir, "conf.d")
    html = os.path.join(ctx.run_dir, "html")
    unprivileged = ctx.ref.name == UNPRIVILEGED
    mime_types = os.path.exists(MIME_TYPES)
    files = {
        conf: (main_config(None, mime_types, "/tmp/nginx.pid") if unprivileged
               else main_config("nginx", mime_types)).encode(),
        os.path.join(conf_d, "default.conf"): (DEFAULT_SERVER.replace("listen       80;", "listen       8080;")
                                               if unprivileged else DEFAULT_SERVER).encode(),
    }
    prepare_html(html)
    prepare_logs(os.path.join(ctx.run_dir, "log"))
    return ImageConfig(
        entrypoint=["/docker-entrypoint.sh"],
        cmd=["nginx", "-g", "daemon off;"],
        env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION": _version()},
        programs={"/docker-entrypoint.sh": [], "nginx": [NGINX]},
        files=files,
        mounts={"/etc/nginx/nginx.conf": conf, "/etc/nginx/conf.d": conf_d, HTML_DIR: html,
                "/var/log/nginx": os.path.join(ctx.run_dir, "log")},
        holds=[*DISTRO_HOLDS, NGINX] + ([MIME_TYPES] if mime_types else []),
        users=[NGINX_USER], groups=[NGINX_GROUP], user="101" if unprivileged else "0",
        size=file_size(NGINX),
    )


@functools.lru_cache(maxsize=1)
def _version() -> str:
    """The installed nginx's version (`nginx -v` prints `nginx version: nginx/1.22.1`)."""
    try:
        out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=5).stderr
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().rpartition("/")[2]
