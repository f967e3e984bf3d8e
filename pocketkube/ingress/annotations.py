"""The `nginx.ingress.kubernetes.io/*` annotations of one Ingress, parsed with ingress-nginx's
semantics into `Annotations`, with a list of problems (unknown or malformed annotations) that
the controller reports as Events. Parsing never raises: a malformed value is reported and
treated as ingress-nginx treats it (ignored, or for `whitelist-source-range`, access denied).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

PREFIX = "nginx.ingress.kubernetes.io/"
BACKEND_PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPCS")
UNSUPPORTED_PROTOCOLS = ("AJP", "FCGI")
DEFAULT_COOKIE = "INGRESSCOOKIE"
_SIZE = re.compile(r"^\d+[kKmMgG]?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Annotations ingress-nginx knows that this controller recognises but does not implement.
_SNIPPETS = ("configuration-snippet", "server-snippet", "auth-snippet", "stream-snippet")


@dataclass(frozen=True)
class Canary:
    by_header: str = ""
    by_header_value: str = ""
    weight: int = 0
    weight_total: int = 100


@dataclass(frozen=True)
class Annotations:
    rewrite_target: str | None = None
    use_regex: bool = False
    ssl_redirect: bool | None = None       # None: the ConfigMap's ssl-redirect
    force_ssl_redirect: bool = False
    backend_protocol: str = "HTTP"
    proxy_body_size: str | None = None     # None: the ConfigMap's proxy-body-size
    affinity_cookie: str | None = None     # the cookie name when `affinity: cookie`
    whitelist: tuple[str, ...] = ()
    denied: str = ""                       # why every request is refused (a bad whitelist)
    permanent_redirect: str | None = None
    permanent_redirect_code: int = 301
    temporal_redirect: str | None = None
    app_root: str | None = None
    upstream_vhost: str | None = None
    x_forwarded_prefix: str | None = None
    timeouts: tuple[tuple[str, int], ...] = ()  # (nginx directive, seconds)
    canary: Canary | None = None           # set when `canary: "true"`
    problems: tuple[str, ...] = field(default=(), compare=False)


def _bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    return None


def parse(annotations: dict | None) -> Annotations:
    """ingress-nginx's reading of an Ingress's annotations (only those with PREFIX)."""
    values: dict = {}
    problems: list[str] = []
    raw = {k[len(PREFIX):]: str(v) for k, v in (annotations or {}).items() if k.startswith(PREFIX)}

    def flag(name: str) -> bool | None:
        if name not in raw:
            return None
        parsed = _bool(raw[name])
        if parsed is None:
            problems.append(f'annotation {PREFIX}{name}: "{raw[name]}" is not a boolean; ignored')
        return parsed

    def integer(name: str, low: int, high: int) -> int | None:
        if name not in raw:
            return None
        try:
            number = int(raw[name].strip())
        except ValueError:
            problems.append(f'annotation {PREFIX}{name}: "{raw[name]}" is not an integer; ignored')
            return None
        if not low <= number <= high:
            problems.append(f"annotation {PREFIX}{name}: {number} is outside {low}..{high}; ignored")
            return None
        return number

    handled = set()
    for name in ("rewrite-target", "use-regex", "ssl-redirect", "force-ssl-redirect", "backend-protocol",
                 "proxy-body-size", "affinity", "session-cookie-name", "whitelist-source-range",
                 "permanent-redirect", "permanent-redirect-code", "temporal-redirect", "app-root",
                 "upstream-vhost", "x-forwarded-prefix", "proxy-connect-timeout", "proxy-read-timeout",
                 "proxy-send-timeout", "canary", "canary-by-header", "canary-by-header-value",
                 "canary-weight", "canary-weight-total", "affinity-mode"):
        handled.add(name)
    if "rewrite-target" in raw:
        values["rewrite_target"] = raw["rewrite-target"]
    values["use_regex"] = bool(flag("use-regex"))
    values["ssl_redirect"] = flag("ssl-redirect")
    values["force_ssl_redirect"] = bool(flag("force-ssl-redirect"))
    if "backend-protocol" in raw:
        protocol = raw["backend-protocol"].strip().upper()
        if protocol in BACKEND_PROTOCOLS:
            values["backend_protocol"] = protocol
        elif protocol in UNSUPPORTED_PROTOCOLS:
            problems.append(f"annotation {PREFIX}backend-protocol: {protocol} is not supported by pocketkube's "
                            f"controller; using HTTP")
        else:
            problems.append(f'annotation {PREFIX}backend-protocol: "{raw["backend-protocol"]}" is not one of '
                            f'{", ".join(BACKEND_PROTOCOLS + UNSUPPORTED_PROTOCOLS)}; using HTTP')
    if "proxy-body-size" in raw:
        size = raw["proxy-body-size"].strip()
        if _SIZE.match(size):
            values["proxy_body_size"] = size
        else:
            problems.append(f'annotation {PREFIX}proxy-body-size: "{size}" is not a size (like 8m); ignored')
    if "affinity" in raw:
        if raw["affinity"].strip() == "cookie":
            cookie = raw.get("session-cookie-name", DEFAULT_COOKIE).strip() or DEFAULT_COOKIE
            if not _TOKEN.match(cookie):
                problems.append(f'annotation {PREFIX}session-cookie-name: "{cookie}" is not a cookie name; '
                                f"using {DEFAULT_COOKIE}")
                cookie = DEFAULT_COOKIE
            values["affinity_cookie"] = cookie
        else:
            problems.append(f'annotation {PREFIX}affinity: "{raw["affinity"]}" is not supported (only "cookie"); '
                            f"ignored")
    if "whitelist-source-range" in raw:
        ranges = []
        for item in raw["whitelist-source-range"].split(","):
            item = item.strip()
            if not item:
                continue
            try:
                ranges.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                values["denied"] = f'invalid whitelist-source-range "{item}"'
                problems.append(f'annotation {PREFIX}whitelist-source-range: "{item}" is not an address or CIDR; '
                                f"the location denies every request")
        values["whitelist"] = tuple(ranges)
    for name, key in (("permanent-redirect", "permanent_redirect"), ("temporal-redirect", "temporal_redirect")):
        if name in raw:
            target = raw[name].strip()
            if re.match(r"^(https?://[^\s\"']+|/[^\s\"']*)$", target):
                values[key] = target
            else:
                problems.append(f'annotation {PREFIX}{name}: "{target}" is not a URL; ignored')
    code = integer("permanent-redirect-code", 300, 308)
    if code is not None:
        values["permanent_redirect_code"] = code
    if "app-root" in raw:
        root = raw["app-root"].strip()
        if root.startswith("/") and not re.search(r"[\s\"';{}]", root):
            values["app_root"] = root
        else:
            problems.append(f'annotation {PREFIX}app-root: "{root}" is not an absolute path; ignored')
    for name, key in (("upstream-vhost", "upstream_vhost"), ("x-forwarded-prefix", "x_forwarded_prefix")):
        if name in raw:
            text = raw[name].strip()
            if text and not re.search(r"[\s\"';{}]", text):
                values[key] = text
            else:
                problems.append(f'annotation {PREFIX}{name}: "{text}" is not valid; ignored')
    timeouts = []
    for name, directive in (("proxy-connect-timeout", "proxy_connect_timeout"),
                            ("proxy-read-timeout", "proxy_read_timeout"),
                            ("proxy-send-timeout", "proxy_send_timeout")):
        seconds = integer(name, 1, 86400)
        if seconds is not None:
            timeouts.append((directive, seconds))
    values["timeouts"] = tuple(timeouts)
    if flag("canary"):
        total = integer("canary-weight-total", 1, 1_000_000) or 100
        weight = integer("canary-weight", 0, total) or 0
        values["canary"] = Canary(by_header=raw.get("canary-by-header", "").strip(),
                                  by_header_value=raw.get("canary-by-header-value", "").strip(),
                                  weight=weight, weight_total=total)
        if values["canary"].by_header and not _TOKEN.match(values["canary"].by_header):
            problems.append(f'annotation {PREFIX}canary-by-header: "{values["canary"].by_header}" is not a header '
                            f"name; ignored")
            values["canary"] = Canary(weight=weight, weight_total=total)
    for name in sorted(set(raw) - handled):
        if name in _SNIPPETS:
            problems.append(f"annotation {PREFIX}{name}: snippet annotations are not allowed "
                            f"(allow-snippet-annotations is false); ignored")
        else:
            problems.append(f"annotation {PREFIX}{name} is not supported by pocketkube's controller; ignored")
    return Annotations(**values, problems=tuple(problems))
