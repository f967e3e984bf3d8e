"""The API server's pods/services proxy: name segments, which addresses may be dialed, and the
rewriting of links that point at the backend (apimachinery's proxy Transport)."""

from __future__ import annotations

import pytest

from pocketkube.apiserver.proxy import proxyable, rewrite_html, rewrite_url, split_scheme_name_port

PREFIX = "/api/v1/namespaces/ns/pods/p/proxy"


@pytest.mark.parametrize("segment, expected", [
    ("web", ("", "web", "")),
    ("web:80", ("", "web", "80")),
    ("web:http", ("", "web", "http")),
    ("https:web:443", ("https", "web", "443")),
    ("http:web:", ("http", "web", "")),
])
def test_split_scheme_name_port(segment, expected):
    assert split_scheme_name_port(segment) == expected


@pytest.mark.parametrize("segment", ["", ":80", "ftp:web:21", "a:b:c:d", "https::443"])
def test_invalid_segments(segment):
    with pytest.raises(ValueError):
        split_scheme_name_port(segment)


@pytest.mark.parametrize("ip, allowed", [
    ("10.244.1.5", True), ("172.18.0.2", True), ("127.0.0.1", False), ("169.254.169.254", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("", False), ("::1", False), ("fd00::5", True),
])
def test_proxyable(ip, allowed):
    assert (proxyable(ip) is None) == allowed


@pytest.mark.parametrize("target, expected", [
    ("/rewriteme", PREFIX + "/rewriteme"),
    ("/a/b/", PREFIX + "/a/b/"),
    ("/a/../b?x=1#f", PREFIX + "/b?x=1#f"),
    (PREFIX + "/already", PREFIX + "/already"),  # points through the proxy already
    ("relative/page", "relative/page"),  # relative links keep working as they are
    ("http://other.example/x", "http://other.example/x"),  # another host: left alone
    ("http://10.244.1.5:8080/x", PREFIX + "/x"),  # the backend itself: through the proxy
    ("/", PREFIX + "/"),
])
def test_rewrite_url(target, expected):
    assert rewrite_url(target, PREFIX, "10.244.1.5:8080") == expected


def test_rewrite_html_touches_only_url_attributes_of_link_elements():
    page = ('<html><head><link rel="stylesheet" href="/s.css"><script src=/app.js></script></head>'
            '<body class="/not-a-link"><a href=\'/x\' title="/y">x</a><img src="/i.png" alt="/z"/>'
            '<p data-href="/d">/text</p><form action="/post" method="post"></form></body></html>')
    out = rewrite_html(page, lambda value: rewrite_url(value, PREFIX, "10.244.1.5:80"))
    assert f'<link rel="stylesheet" href="{PREFIX}/s.css">' in out
    assert f'<script src="{PREFIX}/app.js">' in out
    assert f"<a href='{PREFIX}/x' title=\"/y\">" in out
    assert f'<img src="{PREFIX}/i.png" alt="/z"/>' in out
    assert f'<form action="{PREFIX}/post" method="post">' in out
    assert '<body class="/not-a-link">' in out and '<p data-href="/d">/text</p>' in out
