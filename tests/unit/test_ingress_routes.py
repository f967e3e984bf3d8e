"""Route selection as tables: which Ingresses are the controller's, where a request goes (host,
path, precedence, default backends, canaries, redirects), what is reported, and that the nginx
configuration rendered from the same model is accepted by the real `nginx -t` and sends each
request where `select()` says."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil

import pytest

from pocketkube.ingress import annotations as ann
from pocketkube.ingress import certificates, nginxconf, routes
from pocketkube.ingress.nginx import ConfigRejected, Nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLASSES = [{"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}},
           {"metadata": {"name": "other"}, "spec": {"controller": "example.com/other"}}]


def ing(name, *rules, annotations=None, tls=None, default=None, ts="2026-01-01T00:00:00Z", cls="nginx", ns="default"):
    spec = {"rules": list(rules)}
    if cls is not None:
        spec["ingressClassName"] = cls
    if tls:
        spec["tls"] = tls
    if default:
        spec["defaultBackend"] = backend(default)
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": ts, "annotations": annotations or {},
                         "resourceVersion": "1"}, "spec": spec}


def backend(svc, port=80):
    return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def rule(host, *paths):
    r = {"http": {"paths": [{"path": p, "pathType": t, "backend": backend(s)} for p, t, s in paths]}}
    if host:
        r["host"] = host
    return r


def svc(name, ns="default"):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def eps(name, *ips, ns="default", ready=True):
    return {"metadata": {"name": f"{name}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


SERVICES = [svc(n) for n in ("a", "b", "c", "d")]
SLICES = [eps("a", "10.244.1.2"), eps("b", "10.244.1.3"), eps("c", "10.244.2.4"), eps("d", "10.244.2.5")]


def build(*ingresses, secrets=(), settings=routes.Settings(), services=SERVICES, slices=SLICES):
    return routes.build(list(ingresses), CLASSES, list(services), list(slices), list(secrets), settings)


def where(model, host, path, **kw):
    d = routes.select(model, host, path, **kw)
    return d.status or d.upstream.service


FANOUT = ing("fanout", rule("foo.com", ("/foo", "Exact", "a"), ("/foo", "Prefix", "b"), ("/foo/bar", "Prefix", "c"),
                            ("/static", "ImplementationSpecific", "d")))


@pytest.mark.parametrize("host,path,expected", [
    ("foo.com", "/foo", "a"),              # Exact beats Prefix on the same path
    ("foo.com", "/foo/", "b"),             # a trailing slash: Prefix
    ("foo.com", "/foo/x", "b"),
    ("foo.com", "/foo/bar", "c"),          # the longest path wins
    ("foo.com", "/foo/bar/baz", "c"),
    ("foo.com", "/foo/barbaz", "b"),       # element-wise: /foo/bar does not match /foo/barbaz
    ("foo.com", "/foobar", 404),           # element-wise: /foo does not match /foobar
    ("foo.com", "/staticky", "d"),         # ImplementationSpecific is nginx's plain prefix
    ("FOO.com:8080", "/foo", "a"),         # the port and case of Host do not matter
    ("bar.com", "/foo", 404),              # no rule for the host: the catch-all's 404
])
def test_paths_precedence(host, path, expected):
    assert where(build(FANOUT), host, path) == expected


def test_prefix_trailing_slash_is_ignored():
    m = build(ing("x", rule("h.com", ("/p/", "Prefix", "a"))))
    assert where(m, "h.com", "/p") == "a" and where(m, "h.com", "/p/q") == "a" and where(m, "h.com", "/pq") == 404


@pytest.mark.parametrize("host,expected", [
    ("a.foo.com", "a"), ("b.foo.com", "a"), ("a.b.foo.com", "c"), ("foo.com", "c"), ("x.com", "c"),
])
def test_wildcard_matches_one_label_and_catch_all(host, expected):
    m = build(ing("w", rule("*.foo.com", ("/", "Prefix", "a"))), ing("any", rule(None, ("/", "Prefix", "c"))))
    assert where(m, host, "/") == expected


def test_default_backends():
    m = build(ing("host", rule("h.com", ("/api", "Prefix", "a")), default="b"),
              ing("catch", default="c", ts="2026-01-02T00:00:00Z"))
    assert where(m, "h.com", "/api/x") == "a"
    assert where(m, "h.com", "/other") == "b"    # the host's Ingress's defaultBackend
    assert where(m, "z.com", "/") == "c"         # a rule-less Ingress's defaultBackend is the catch-all


def test_merge_and_conflicts_older_wins():
    m = build(ing("old", rule("h.com", ("/", "Prefix", "a"))),
              ing("new", rule("h.com", ("/", "Prefix", "b"), ("/x", "Prefix", "c")), ts="2026-02-01T00:00:00Z"))
    assert where(m, "h.com", "/") == "a" and where(m, "h.com", "/x") == "c"
    [conflict] = [p for p in m.problems if p.reason == "Conflict"]
    assert conflict.ingress == "default/new" and "already defined in Ingress default/old" in conflict.message


@pytest.mark.parametrize("ingress,ours", [
    (ing("x", cls="nginx"), True),
    (ing("x", cls="other"), False),
    (ing("x", cls="missing"), False),
    (ing("x", cls=None), False),
    (ing("x", cls="other", annotations={"kubernetes.io/ingress.class": "nginx"}), True),  # the annotation first
    (ing("x", cls="nginx", annotations={"kubernetes.io/ingress.class": "traefik"}), False),
])
def test_class_decision(ingress, ours):
    assert routes.class_decision(ingress, {c["metadata"]["name"]: c for c in CLASSES}, routes.Settings())[0] is ours


def test_without_class_only_when_asked():
    m = build(ing("x", rule("h.com", ("/", "Prefix", "a")), cls=None),
              settings=routes.Settings(watch_without_class=True))
    assert where(m, "h.com", "/") == "a"


def test_missing_service_and_no_endpoints_answer_503_with_a_reason():
    m = build(ing("x", rule("h.com", ("/gone", "Prefix", "nope"), ("/empty", "Prefix", "a"))),
              slices=[eps("a", "10.244.1.2", ready=False)])
    assert where(m, "h.com", "/gone") == 503 and where(m, "h.com", "/empty") == 503
    messages = {p.message for p in m.problems}
    assert 'Service "default/nope" not found; requests get 503' in messages
    assert 'Service "default/a" has no ready endpoints for port 80; requests get 503' in messages


def test_named_service_port():
    m = build(ing("x", {"host": "h.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend("a", "http")}]}}))
    d = routes.select(m, "h.com", "/")
    assert d.upstream.endpoints == [("10.244.1.2", 8080)] and d.upstream.name == "default-a-http"


def test_canary_by_header():
    m = build(ing("main", rule("h.com", ("/", "Prefix", "a"))),
              ing("canary", rule("h.com", ("/", "Prefix", "b")), ts="2026-02-01T00:00:00Z",
                  annotations={"nginx.ingress.kubernetes.io/canary": "true",
                               "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary"}))
    assert where(m, "h.com", "/") == "a"
    assert where(m, "h.com", "/", headers={"X-Canary": "always"}) == "b"
    assert where(m, "h.com", "/", headers={"x-canary": "never"}) == "a"
    assert not [p for p in m.problems if p.reason == "Conflict"]


def test_canary_without_main_is_reported():
    m = build(ing("lonely", rule("h.com", ("/", "Prefix", "b")),
                  annotations={"nginx.ingress.kubernetes.io/canary": "true"}))
    assert [p.reason for p in m.problems] == ["Canary"]


def test_regex_mode_and_rewrite():
    m = build(ing("rw", rule("h.com", ("/something(/|$)(.*)", "ImplementationSpecific", "a"), ("/x", "Exact", "b")),
                  annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}))
    assert m.servers["h.com"].regex
    assert where(m, "h.com", "/something/abc") == "a" and where(m, "h.com", "/x") == "b"
    m = build(ing("bad", rule("h.com", ("/(unclosed", "ImplementationSpecific", "a")),
                  annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}))
    assert [p.reason for p in m.problems] == ["Path"]


def _tls_secret(host, name="tls", ns="default"):
    cert, key = certificates.make_self_signed(host, [host])
    return {"metadata": {"name": name, "namespace": ns}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}}


@pytest.mark.parametrize("secret,problem", [
    (None, 'secret "default/tls" not found'),
    ({"metadata": {"name": "tls", "namespace": "default"}, "type": "Opaque", "data": {}}, "is of type Opaque"),
    ("wrong-host", "the certificate is for other.com, not h.com"),
    ("garbage", "tls.crt is not a PEM certificate"),
    ("ok", ""),
])
def test_tls_secret_checks(secret, problem):
    if secret == "wrong-host":
        secret = _tls_secret("other.com")
    elif secret == "garbage":
        secret = {"metadata": {"name": "tls", "namespace": "default"}, "type": "kubernetes.io/tls",
                  "data": {"tls.crt": base64.b64encode(b"nope").decode(), "tls.key": ""}}
    elif secret == "ok":
        secret = _tls_secret("h.com")
    m = build(ing("t", rule("h.com", ("/", "Prefix", "a")), tls=[{"hosts": ["h.com"], "secretName": "tls"}]),
              secrets=[secret] if secret else [])
    tls = m.servers["h.com"].tls
    assert (tls.problem or "").find(problem) >= 0 and tls.default == bool(problem)
    assert [p.reason for p in m.problems] == (["TLSSecret"] if problem else [])
    d = routes.select(m, "h.com", "/p")
    assert d.status == 308 and d.redirect == "https://h.com/p"
    assert routes.select(m, "h.com", "/p", scheme="https").upstream.service == "a"


def test_ssl_redirect_off_by_annotation_and_config():
    tls = [{"hosts": ["h.com"], "secretName": "tls"}]
    off = build(ing("t", rule("h.com", ("/", "Prefix", "a")), tls=tls,
                    annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}), secrets=[_tls_secret("h.com")])
    assert where(off, "h.com", "/") == "a"
    off = build(ing("t", rule("h.com", ("/", "Prefix", "a")), tls=tls), secrets=[_tls_secret("h.com")],
                settings=routes.Settings(ssl_redirect=False))
    assert where(off, "h.com", "/") == "a"
    forced = build(ing("t", rule("h.com", ("/", "Prefix", "a")),
                       annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}))
    assert where(forced, "h.com", "/") == 308


@pytest.mark.parametrize("annotations,check", [
    ({"backend-protocol": "HTTPS"}, lambda a: a.backend_protocol == "HTTPS" and not a.problems),
    ({"backend-protocol": "SPDY"}, lambda a: a.backend_protocol == "HTTP" and len(a.problems) == 1),
    ({"proxy-body-size": "8m"}, lambda a: a.proxy_body_size == "8m"),
    ({"proxy-body-size": "lots"}, lambda a: a.proxy_body_size is None and a.problems),
    ({"whitelist-source-range": "10.0.0.0/8, 192.168.1.1"},
     lambda a: a.whitelist == ("10.0.0.0/8", "192.168.1.1/32") and not a.denied),
    ({"whitelist-source-range": "10.0.0.0/33"}, lambda a: a.denied and a.problems),
    ({"affinity": "cookie", "session-cookie-name": "route"}, lambda a: a.affinity_cookie == "route"),
    ({"affinity": "ip"}, lambda a: a.affinity_cookie is None and a.problems),
    ({"permanent-redirect": "https://example.com/x", "permanent-redirect-code": "308"},
     lambda a: a.permanent_redirect == "https://example.com/x" and a.permanent_redirect_code == 308),
    ({"app-root": "/app"}, lambda a: a.app_root == "/app"),
    ({"app-root": "app"}, lambda a: a.app_root is None and a.problems),
    ({"canary": "true", "canary-weight": "30"}, lambda a: a.canary == ann.Canary(weight=30)),
    ({"canary": "true", "canary-weight": "300"}, lambda a: a.canary == ann.Canary() and a.problems),
    ({"ssl-redirect": "maybe"}, lambda a: a.ssl_redirect is None and a.problems),
    ({"configuration-snippet": "return 200;"}, lambda a: "snippet annotations are not allowed" in a.problems[0]),
    ({"made-up": "x"}, lambda a: "made-up is not supported" in a.problems[0]),
])
def test_annotations(annotations, check):
    assert check(ann.parse({ann.PREFIX + k: v for k, v in annotations.items()}))


# ---- the rendered configuration, checked by nginx itself ----------------------------------------

EVERYTHING = [
    FANOUT,
    ing("rw", rule("rw.com", ("/something(/|$)(.*)", "ImplementationSpecific", "a")),
        annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}),
    ing("wild", rule("*.w.com", ("/", "Prefix", "b")), tls=[{"hosts": ["*.w.com"], "secretName": "tls"}],
        annotations={"nginx.ingress.kubernetes.io/affinity": "cookie",
                     "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8",
                     "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                     "nginx.ingress.kubernetes.io/proxy-read-timeout": "120"}),
    ing("main", rule("c.com", ("/", "Prefix", "a"))),
    ing("canary", rule("c.com", ("/", "Prefix", "c")), ts="2026-03-01T00:00:00Z",
        annotations={"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "25",
                     "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                     "nginx.ingress.kubernetes.io/canary-by-header-value": "yes$please"}),
    ing("redir", rule("r.com", ("/old", "Prefix", "a")),
        annotations={"nginx.ingress.kubernetes.io/permanent-redirect": "https://example.com/new"}),
    ing("root", rule("app.com", ("/", "Prefix", "d")), annotations={"nginx.ingress.kubernetes.io/app-root": "/app"}),
    ing("grpc", rule("g.com", ("/", "Prefix", "b")), annotations={"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}),
    ing("gone", rule("gone.com", ("/", "Prefix", "missing"))),
    ing("fallback", default="c"),
]


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed (scripts/setup installs it)")
def test_rendered_configuration_passes_nginx_t(tmp_path):
    model = build(*EVERYTHING, secrets=[_tls_secret("*.w.com")])
    layout = nginxconf.Layout(str(tmp_path), 18080, 18443)
    text, files = nginxconf.render(model, layout)
    runner = Nginx(layout, NGINX)
    runner.prepare()
    asyncio.run(runner.check(text, files))  # raises ConfigRejected with nginx's message
    with pytest.raises(ConfigRejected, match="unknown directive"):
        asyncio.run(runner.check(text.replace("sendfile on;", "sendfile on; bogus_directive 1;"), files))
    assert "server 10.244.1.2:8080 max_fails=0;" in text
    assert 'server_name "~^[^.]+\\\\.w\\\\.com$";' in text  # nginx reads a doubled backslash as one
    assert "split_clients" in text and "${literal_dollar}" in text
    assert 'rewrite "(?i)/something(/|$)(.*)" "/$2" break;' in text
