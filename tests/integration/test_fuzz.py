"""Fuzz tests (hypothesis) of the API server's HTTP handlers, and the bad inputs named in the issue.

One real `pocketkube server` (memory datastore) serves the whole module over HTTPS with its
token. Every response must keep four promises:
  - its code is one a real kube-apiserver gives for that situation (a 500 only where the real
    apiserver also answers 500: the plain errors of strategic merge patch);
  - every failure body is a metav1.Status whose `code` is the HTTP code;
  - the server process is still running;
  - the sentinel objects (a Service, a Deployment and a ConfigMap in namespace fuzz-sentinel)
    are byte-for-byte unchanged (same resourceVersion) after every request that failed or was
    a dry run.
Each bug the fuzzers found has an explicit test at the end of this file.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlparse

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

pytestmark = pytest.mark.fuzz

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
BODY_TYPES = (JSON, YAML, PROTOBUF)
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH, APPLY)
OTHER_TYPES = ("text/plain", "application/xml", "application/x-www-form-urlencoded", "*/*",
               "application/json; charset=utf-8", "application/yaml;charset=utf-8", "", None)

# Codes a real apiserver answers these requests with. 504 only for a watch from a future
# resourceVersion ("Too large resource version"); 503 only where pocketkube still lacks a
# node agent (log, exec, ...).
EXPECTED_CODES = {200, 201, 400, 404, 405, 406, 409, 410, 413, 415, 422}
NODE_AGENT_SUBRESOURCES = ("log", "exec", "attach", "portforward", "proxy", "eviction", "ephemeralcontainers")
# apimachinery strategicpatch errors that are plain Go errors: interpretStrategicMergePatchError
# passes them through and the apiserver answers 500 InternalError (handlers/patch.go).
REAL_SMP_500 = re.compile(
    r"^(unknown patch type: |map: .* does not contain declared merge key: |expected a .*, but received a "
    r"|The order in patch list:|cannot merge lists without merge key for |list element types are not identical"
    r"|no elements in any of the given slices|merging lists cannot yet be specified in the patch"
    r"|value for key .* is not a map\.)", re.S)

SENTINEL_NS = "fuzz-sentinel"
MAX_BODY = 3 * 1024 * 1024  # the apiserver's MaxRequestBodyBytes


# ---- manifests -------------------------------------------------------------------------


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                                                         {"name": "https", "port": 443}]}}


def deployment(name: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx",
                                                           "ports": [{"containerPort": 80}],
                                                           "env": [{"name": "A", "value": "1"}]}]}}}}


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "web"}},
            "data": {"a": "1", "b": "two"}}


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"]}]}}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def endpointslice(name: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def ingress(name: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"rules": [{"host": "web.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}


@dataclass(frozen=True)
class Kind:
    resource: str
    collection: str  # URL of the collection in SENTINEL_NS (or cluster-wide)
    manifest: object  # name -> dict


KINDS = {
    "services": Kind("services", f"/api/v1/namespaces/{SENTINEL_NS}/services", service),
    "deployments": Kind("deployments", f"/apis/apps/v1/namespaces/{SENTINEL_NS}/deployments", deployment),
    "configmaps": Kind("configmaps", f"/api/v1/namespaces/{SENTINEL_NS}/configmaps", configmap),
    "pods": Kind("pods", f"/api/v1/namespaces/{SENTINEL_NS}/pods", pod),
    "namespaces": Kind("namespaces", "/api/v1/namespaces", namespace),
    "endpointslices": Kind("endpointslices", f"/apis/discovery.k8s.io/v1/namespaces/{SENTINEL_NS}/endpointslices",
                           endpointslice),
    "ingresses": Kind("ingresses", f"/apis/networking.k8s.io/v1/namespaces/{SENTINEL_NS}/ingresses", ingress),
}
SENTINELS = {"services": "sentinel-svc", "deployments": "sentinel-deploy", "configmaps": "sentinel-cm"}


def sentinel_url(resource: str) -> str:
    return f"{KINDS[resource].collection}/{SENTINELS[resource]}"


# ---- HTTPS -----------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes

    def status_body(self) -> dict:
        return json.loads(self.body)


class Client:
    """Raw HTTPS to the server with its token; a fresh connection per request."""

    def __init__(self, server):
        url = urlparse(server.url)
        self.host, self.port = url.hostname, url.port
        self.ctx = ssl.create_default_context(cafile=server.ca)
        self.token = server.token

    def send(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
             accept: str = JSON, stream: bool = False) -> Reply:
        """One request. With `stream` (a watch), a 2xx answer is not read: the connection is
        closed after the headers, as a client that gives up on a watch does."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Accept": accept}
            if content_type is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            if stream and resp.status < 300:
                return Reply(resp.status, b"")
            return Reply(resp.status, resp.read())
        finally:
            conn.close()


class Sentinels:
    """The objects no failed request may touch, and their last known bytes."""

    def __init__(self, client: Client):
        self.client = client
        self.snapshot: dict[str, bytes] = {}

    def create(self) -> None:
        made = self.client.send("POST", "/api/v1/namespaces", json.dumps(namespace(SENTINEL_NS)).encode(), JSON)
        assert made.status == 201, made.body
        for resource, name in SENTINELS.items():
            made = self.client.send("POST", KINDS[resource].collection,
                                    json.dumps(KINDS[resource].manifest(name)).encode(), JSON)
            assert made.status == 201, made.body
        self.settle()

    def read(self) -> dict[str, bytes]:
        now = {}
        for resource in SENTINELS:
            got = self.client.send("GET", sentinel_url(resource))
            assert got.status == 200, (resource, got.status, got.body[:300])
            now[resource] = got.body
        return now

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until controllers (if any) leave the sentinels alone, then remember them."""
        deadline = time.monotonic() + timeout
        previous = self.read()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            current = self.read()
            if current == previous:
                break
            previous = current
        self.snapshot = previous

    def assert_unchanged(self, request: str) -> None:
        now = self.read()
        for resource, before in self.snapshot.items():
            assert now[resource] == before, (
                f"{request} changed sentinel {resource}:\nbefore {before[:600]!r}\nafter  {now[resource][:600]!r}")

    def refresh(self) -> None:
        self.snapshot = self.read()


@dataclass
class Fuzz:
    server: object
    client: Client
    sentinels: Sentinels

    def exchange(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 *, dry_run: bool = False, stream: bool = False) -> Reply:
        """Send one request and check every promise; returns the reply."""
        reply = self.client.send(method, path, body, content_type, stream=stream)
        request = f"{method} {path[:300]} Content-Type={content_type!r} body={(body or b'')[:300]!r}"
        assert self.server.proc.poll() is None, f"the server died on {request}"
        check_code(reply, request, path, content_type)
        if reply.status >= 300:
            check_status_body(reply, request)
        if reply.status >= 300 or dry_run:
            self.sentinels.assert_unchanged(request)
        else:
            self.sentinels.refresh()
        return reply


def check_code(reply: Reply, request: str, path: str, content_type: str | None) -> None:
    if reply.status in EXPECTED_CODES:
        return
    message = _message(reply)
    if reply.status == 500 and _media_type(content_type) == STRATEGIC and REAL_SMP_500.match(message):
        return
    if reply.status == 504 and "watch=" in path and message.startswith("Too large resource version"):
        return
    if reply.status == 503 and any(f"/{sub}" in path for sub in NODE_AGENT_SUBRESOURCES):
        return
    pytest.fail(f"{request}\n-> unexpected HTTP {reply.status}: {reply.body[:600]!r}")


def check_status_body(reply: Reply, request: str) -> None:
    try:
        body = reply.status_body()
    except ValueError:
        pytest.fail(f"{request}\n-> HTTP {reply.status} with a body that is not JSON: {reply.body[:300]!r}")
    assert isinstance(body, dict), (request, body)
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", (request, body)
    assert body.get("status") == "Failure" and body.get("code") == reply.status, (request, body)
    assert isinstance(body.get("message"), str), (request, body)


def _message(reply: Reply) -> str:
    try:
        body = reply.status_body()
    except ValueError:
        return ""
    return body.get("message", "") if isinstance(body, dict) else ""


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# ---- the server, once per module ----------------------------------------------------------



@pytest.fixture(scope="module")
def server(api_server):
    """The API server alone: the fuzzers check that failed requests change nothing stored,
    which controllers writing status would blur."""
    return api_server

@pytest.fixture(scope="module")
def fuzz(server) -> Fuzz:
    """The module's server (tests/conftest.py: start_server, memory datastore, stopped at the
    end of the module) with the sentinels created in it."""
    client = Client(server)
    sentinels = Sentinels(client)
    sentinels.create()
    return Fuzz(server, client, sentinels)


# ---- strategies ------------------------------------------------------------------------

FIELD_NAMES = ("apiVersion", "kind", "metadata", "name", "generateName", "namespace", "labels", "annotations",
               "resourceVersion", "uid", "finalizers", "ownerReferences", "spec", "status", "data", "binaryData",
               "ports", "port", "targetPort", "protocol", "selector", "matchLabels", "type", "clusterIP",
               "replicas", "template", "containers", "image", "env", "value", "rules", "host", "endpoints",
               "addresses", "addressType", "app", "a", "b", "$patch", "$retainKeys")

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16)
                | st.sampled_from(["", "web", "nginx", "TCP", "ClusterIP", "v1", "All", "delete", "replace"]))
json_keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=16)


def _node_paths(doc, prefix=()):
    """Every path (tuple of keys and indexes) into a JSON document, the root included."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _node_paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _node_paths(value, prefix + (index,))


def _replace_at(doc, path, value):
    """A copy of `doc` with the node at `path` set to `value` (missing maps on the way made)."""
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        if isinstance(node, dict) and not isinstance(node.get(step), (dict, list)):
            node[step] = {}
        node = node[step]
    node[path[-1]] = value
    return doc


names = (st.sampled_from(["fz-a", "fz-b", "Fz_Upper", "fz.dots", "-lead", "a" * 63, "a" * 64, "a" * 300])
         | st.text(alphabet="abcz09-.", min_size=1, max_size=70))


@st.composite
def mutated_manifests(draw, kind: Kind, name: str | None = None) -> dict:
    """A real manifest of `kind` with one node replaced by a random JSON value."""
    doc = kind.manifest(name or draw(names))
    path = draw(st.sampled_from(list(_node_paths(doc))))
    return _replace_at(doc, path, draw(json_values))


def encode(doc, as_yaml: bool) -> bytes:
    if as_yaml:
        return yaml.safe_dump(doc, allow_unicode=True).encode()
    return json.dumps(doc).encode()


@st.composite
def object_bodies(draw, kind: Kind, name: str | None = None) -> bytes:
    """Bodies for POST and PUT: random bytes, random JSON/YAML, truncated or mutated manifests,
    protobuf-looking garbage."""
    shape = draw(st.sampled_from(["bytes", "json", "yaml", "truncated", "mutated", "protobuf", "valid"]))
    if shape == "bytes":
        return draw(st.binary(max_size=256))
    if shape in ("json", "yaml"):
        return encode(draw(json_values), shape == "yaml")
    if shape == "protobuf":
        return b"k8s\x00" + draw(st.binary(max_size=128))
    as_yaml = draw(st.booleans())
    if shape == "valid":
        return encode(kind.manifest(name or draw(names)), as_yaml)
    if shape == "mutated":
        return encode(draw(mutated_manifests(kind, name)), as_yaml)
    whole = encode(kind.manifest(name or draw(names)), as_yaml)
    return whole[:draw(st.integers(min_value=0, max_value=len(whole) - 1))]


body_content_types = st.sampled_from(BODY_TYPES) | st.sampled_from(PATCH_TYPES + OTHER_TYPES)


def _decodes_to_unnamed_object(body: bytes, content_type: str | None) -> bool:
    """Whether a PUT body is an object without metadata.name (the apiserver answers 400)."""
    media = _media_type(content_type) or JSON
    try:
        if media == JSON:
            doc = json.loads(body)
        elif media == YAML:
            doc = yaml.safe_load(body)
        else:
            return False
    except (ValueError, yaml.YAMLError, RecursionError):
        return False
    if not isinstance(doc, dict):
        return False
    meta = doc.get("metadata")
    return not (isinstance(meta, dict) and meta.get("name"))


# ---- fuzz: object bodies -----------------------------------------------------------------


@settings(FUZZ, max_examples=700)
@given(data=st.data())
def test_fuzz_create_and_replace_bodies(fuzz, data):
    kind = KINDS[data.draw(st.sampled_from(sorted(KINDS)), label="kind")]
    method = data.draw(st.sampled_from(["POST", "PUT", "POST item", "PUT collection"]), label="method")
    content_type = data.draw(body_content_types, label="content type")
    if method in ("POST item", "PUT collection"):  # no such route: 405 before anything is read
        url = kind.collection + ("/fz-item" if method == "POST item" else "")
        reply = fuzz.exchange(method.split()[0], url, data.draw(object_bodies(kind), label="body"), content_type)
        assert reply.status == 405, (method, url, reply.body[:300])
        return
    if data.draw(st.integers(min_value=0, max_value=30), label="huge?") == 0:
        url = kind.collection if method == "POST" else f"{kind.collection}/{SENTINELS.get(kind.resource, 'fz-put')}"
        body = json.dumps(kind.manifest("fz-huge")).encode() + b" " * MAX_BODY
        reply = fuzz.exchange(method, url, body, content_type)
        supported = (_media_type(content_type) or JSON) in BODY_TYPES
        assert reply.status == (413 if supported else 415), (method, url, content_type, reply.body[:300])
        return
    dry_run = data.draw(st.booleans(), label="dryRun")
    query = {"dryRun": "All"} if dry_run else {}
    query.update(data.draw(st.fixed_dictionaries({}, optional={
        "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore"])}), label="query"))
    if method == "POST":
        url = kind.collection
        body = data.draw(object_bodies(kind), label="body")
    else:
        name = SENTINELS.get(kind.resource, SENTINEL_NS if kind.resource == "namespaces" else "fz-put")
        url = f"{kind.collection}/{name}"
        body = data.draw(object_bodies(kind, name), label="body")
    if query:
        url += "?" + urlencode(query)
    reply = fuzz.exchange(method, url, body, content_type, dry_run=dry_run)
    if method == "PUT" and reply.status < 300:
        assert not _decodes_to_unnamed_object(body, content_type), (url, body[:200])
    media = _media_type(content_type)
    if media and media not in BODY_TYPES:
        assert reply.status == 415, (method, url, content_type, reply.body[:300])


# ---- fuzz: patches against the sentinels ----------------------------------------------------

JSON_POINTERS = ("/metadata/labels/app", "/metadata/labels/new", "/metadata/name", "/metadata/resourceVersion",
                 "/metadata/annotations", "/spec/ports/0/port", "/spec/ports/5", "/spec/ports/-",
                 "/spec/selector", "/spec/replicas", "/spec/template/spec/containers/0/image",
                 "/data/a", "/data/zz", "/data", "/status", "", "/", "/~1odd~0path", "/nope/deeper", "metadata")


@st.composite
def json_patch_documents(draw):
    op = st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]) | json_scalars},
        optional={"path": st.sampled_from(JSON_POINTERS) | json_scalars,
                  "from": st.sampled_from(JSON_POINTERS),
                  "value": json_values})
    return draw(st.lists(op, max_size=4) | json_values)


@st.composite
def strategic_directives(draw):
    """A strategic merge patch that leans on the directives: $patch in maps and list items,
    $retainKeys, $setElementOrder and $deleteFromPrimitiveList."""
    port_item = st.fixed_dictionaries({"port": st.sampled_from([80, 443, 9999]) | json_scalars},
                                      optional={"$patch": st.sampled_from(["delete", "replace", "merge", "x"]),
                                                "name": st.sampled_from(["http", "https", "new"])})
    spec = st.fixed_dictionaries({}, optional={
        "$patch": st.sampled_from(["replace", "delete", "merge", "bogus"]) | json_scalars,
        "$retainKeys": st.lists(st.sampled_from(["ports", "selector", "type", "replicas"]) | json_scalars,
                                max_size=3) | json_scalars,
        "ports": st.lists(port_item | json_values, max_size=3) | json_scalars,
        "$setElementOrder/ports": st.lists(st.fixed_dictionaries({"port": st.sampled_from([80, 443, 1])})
                                           | json_values, max_size=3) | json_scalars,
        "selector": st.dictionaries(json_keys, json_scalars, max_size=2) | json_scalars,
        "replicas": json_scalars,
    })
    metadata = st.fixed_dictionaries({}, optional={
        "labels": st.dictionaries(json_keys, json_scalars, max_size=3) | st.just({"$patch": "replace"}),
        "finalizers": st.lists(st.text(max_size=8), max_size=2),
        "$deleteFromPrimitiveList/finalizers": st.lists(json_scalars, max_size=2) | json_scalars,
        "$setElementOrder/finalizers": st.lists(json_scalars, max_size=2),
    })
    return draw(st.fixed_dictionaries({}, optional={"metadata": metadata, "spec": spec,
                                                    "data": st.dictionaries(json_keys, json_values, max_size=3),
                                                    "$patch": st.sampled_from(["delete", "replace", "x"])}))


@st.composite
def patches(draw):
    """(content type, body) for PATCH: mostly the right body for the type, sometimes not."""
    family = draw(st.sampled_from(["json", "merge", "strategic", "apply", "bytes", "mismatched"]))
    if family == "bytes":
        return draw(st.sampled_from(PATCH_TYPES)), draw(st.binary(max_size=128))
    if family == "mismatched":
        return draw(st.sampled_from(PATCH_TYPES + BODY_TYPES + OTHER_TYPES)), encode(draw(json_values), False)
    if family == "json":
        return JSON_PATCH, encode(draw(json_patch_documents()), False)
    if family == "apply":
        return APPLY, encode(draw(json_values | strategic_directives()), draw(st.booleans()))
    doc = draw(strategic_directives() | json_values | st.builds(
        lambda base, path, value: _replace_at(base, path[:2], value),
        st.sampled_from([service("x"), deployment("x"), configmap("x")]),
        st.sampled_from([("metadata", "labels"), ("spec", "ports"), ("spec", "replicas"), ("data", "a"),
                         ("spec",), ("metadata",)]), json_values))
    return (MERGE if family == "merge" else STRATEGIC), encode(doc, False)


@settings(FUZZ, max_examples=700)
@given(data=st.data())
def test_fuzz_patches_against_sentinels(fuzz, data):
    resource = data.draw(st.sampled_from(sorted(SENTINELS)), label="sentinel")
    content_type, body = data.draw(patches(), label="patch")
    query = data.draw(st.fixed_dictionaries({}, optional={
        "dryRun": st.just("All"),
        "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore"]),
        "fieldManager": st.sampled_from(["fuzz", "kubectl"]),
        "force": st.sampled_from(["true", "false"])}), label="query")
    subresource = data.draw(st.sampled_from(["", "", "", "/status", "/scale"]), label="subresource")
    if subresource == "/scale" and resource != "deployments":
        subresource = ""
    url = sentinel_url(resource) + subresource + ("?" + urlencode(query) if query else "")
    reply = fuzz.exchange("PATCH", url, body, content_type, dry_run="dryRun" in query)
    if _media_type(content_type) not in PATCH_TYPES and reply.status != 404:  # a missing route comes first
        assert reply.status == 415, (url, content_type, reply.body[:300])


# ---- fuzz: query strings ------------------------------------------------------------------

label_selector_text = st.text(alphabet="abcxyz09=!,()-_./ <>", max_size=24)
label_selectors = (st.sampled_from(["app=web", "app!=web", "app in (web,db)", "app notin (x)", "!app", "app",
                                    "a in (", "a in ()", "=", "a==b", "a=b=c", "x/y/z=1", "a" * 70 + "=b",
                                    "app=" + "v" * 64, "app in (web", "a,b,", "tier=back end"])
                   | label_selector_text | st.text(max_size=12))
field_selectors = (st.sampled_from(["metadata.name=sentinel-cm", "metadata.namespace!=x", "spec.clusterIP=1",
                                    "status.phase=Running", "spec.nodeName=", "foo=bar", "metadata.name",
                                    "metadata.name==a", "metadata.name=a,metadata.name=b", "=", "a\\=b=c",
                                    "metadata.name in (a)"])
                   | st.text(alphabet="metadaname.=!,\\ ", max_size=24) | st.text(max_size=10))


integers_as_text = st.integers(min_value=0, max_value=2 ** 64).map(str)
junk = st.text(max_size=12)
query_values = {
    "labelSelector": label_selectors,
    "fieldSelector": field_selectors,
    "limit": integers_as_text | junk,
    "continue": st.sampled_from(["", "abc", "eyJydiI6MX0", "%%%", "bm90IGpzb24"]) | junk,
    "resourceVersion": st.sampled_from(["", "0", "1", "abc", "-1", "99999999999"]) | integers_as_text | junk,
    "resourceVersionMatch": st.sampled_from(["Exact", "NotOlderThan", "bogus", ""]),
    "dryRun": st.sampled_from(["All", "all", "", "None"]) | junk,
    "fieldValidation": st.sampled_from(["Strict", "Warn", "Ignore", "strict", ""]) | junk,
    "propagationPolicy": st.sampled_from(["Orphan", "Background", "Foreground", "orphan", ""]) | junk,
    "gracePeriodSeconds": st.sampled_from(["0", "30", "abc"]) | integers_as_text,
    "allowWatchBookmarks": st.sampled_from(["true", "false", "x"]),
}


@settings(FUZZ, max_examples=700)
@given(data=st.data())
def test_fuzz_query_strings(fuzz, data):
    verb = data.draw(st.sampled_from(["list", "watch", "delete", "deletecollection"]), label="verb")
    resource = data.draw(st.sampled_from(sorted(KINDS)), label="resource")
    params = data.draw(st.lists(st.sampled_from(sorted(query_values)), max_size=4, unique=True), label="params")
    query = [(p, data.draw(query_values[p], label=p)) for p in params]
    url = KINDS[resource].collection
    dry_run = verb in ("delete", "deletecollection")
    if verb == "watch":
        query += [("watch", "true"), ("timeoutSeconds", "1")]
    if dry_run:  # never delete for real: the sentinels and the namespace must stay
        query.insert(0, ("dryRun", "All"))
        if verb == "delete":
            url = sentinel_url(resource) if resource in SENTINELS else f"{url}/fz-missing"
    method = "GET" if verb in ("list", "watch") else "DELETE"
    fuzz.exchange(method, f"{url}?{urlencode(query)}", dry_run=dry_run, stream=verb == "watch")


# ---- fuzz: URL paths ---------------------------------------------------------------------

PATH_WORDS = ("v1", "v2", "v1beta1", "apps", "discovery.k8s.io", "networking.k8s.io", "nosuch.example.com",
              "namespaces", SENTINEL_NS, "default", "services", "deployments", "configmaps", "pods",
              "endpointslices", "ingresses", "nodes", "widgets", "status", "scale", "finalize", "binding",
              "log", "exec", "proxy", "eviction", *SENTINELS.values(), "", ".", "..", "%", "a b", "é",
              "UPPER", "-", "x" * 253, "x" * 300)
path_segments = (st.sampled_from(PATH_WORDS)
                 | st.text(max_size=12)
                 | st.text(alphabet="abc-", min_size=250, max_size=400))


@settings(FUZZ, max_examples=700)
@given(data=st.data())
def test_fuzz_url_paths(fuzz, data):
    root = data.draw(st.sampled_from(["/api", "/apis"]), label="root")
    segments = data.draw(st.lists(path_segments, max_size=7), label="segments")
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]), label="method")
    path = root + "".join("/" + quote(s, safe="") for s in segments)
    body, content_type, dry_run = None, None, False
    if method == "POST":
        body, content_type = json.dumps({"metadata": {"name": "fz-path"}}).encode(), JSON
    elif method == "PUT":  # a name that matches no URL, so a replace can only fail
        body, content_type = json.dumps({"metadata": {"name": "fz-path-other"}}).encode(), JSON
    elif method == "PATCH":  # an empty merge patch changes nothing, so it must not bump anything
        body, content_type, dry_run = b"{}", MERGE, True
    elif method == "DELETE":
        path, dry_run = path + "?dryRun=All", True
    reply = fuzz.exchange(method, path, body, content_type, dry_run=dry_run)
    if root == "/apis" and len(segments) >= 1 and segments[0] == "nosuch.example.com":
        assert reply.status == 404, (path, reply.body[:300])


# ---- the bad inputs the issue names, with their exact codes --------------------------------


def _status(reply: Reply) -> dict:
    body = reply.status_body()
    assert body["kind"] == "Status" and body["code"] == reply.status
    return body


def test_name_of_300_characters_is_422_on_metadata_name(fuzz):
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection, json.dumps(configmap("n" * 300)).encode(), JSON)
    assert reply.status == 422
    body = _status(reply)
    assert body["reason"] == "Invalid"
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.name"]


def test_label_selector_that_does_not_parse_is_400(fuzz):
    reply = fuzz.exchange("GET", KINDS["configmaps"].collection + "?" + urlencode({"labelSelector": "a in ("}))
    assert reply.status == 400 and _status(reply)["reason"] == "BadRequest"


def test_unknown_kind_version_and_group_are_404(fuzz):
    for path in (f"/api/v1/namespaces/{SENTINEL_NS}/widgets", f"/apis/apps/v2/namespaces/{SENTINEL_NS}/deployments",
                 "/apis/nosuch.example.com/v1/things", f"/api/v1/namespaces/{SENTINEL_NS}/configmaps/x/nosub"):
        reply = fuzz.exchange("GET", path)
        assert reply.status == 404, path
        assert _status(reply)["message"] == "the server could not find the requested resource"


def test_protobuf_garbage_is_400(fuzz):
    for garbage in (b"\x00\x01garbage", b"k8s\x00\xff\xff\xff\xff"):
        reply = fuzz.exchange("POST", KINDS["services"].collection, garbage, PROTOBUF)
        assert reply.status == 400 and _status(reply)["reason"] == "BadRequest"


def test_body_of_4_mib_is_413(fuzz):
    big = json.dumps(configmap("fz-big") | {"data": {"a": "x" * (4 * 1024 * 1024)}}).encode()
    for method, url in (("POST", KINDS["configmaps"].collection), ("PUT", sentinel_url("configmaps"))):
        reply = fuzz.exchange(method, url, big, JSON)
        assert reply.status == 413 and _status(reply)["reason"] == "RequestEntityTooLarge"
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), big, MERGE)
    assert reply.status == 413


def test_json_patch_with_failing_test_op_is_422(fuzz):
    ops = [{"op": "test", "path": "/data/a", "value": "not-what-is-there"},
           {"op": "replace", "path": "/data/a", "value": "changed"}]
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), json.dumps(ops).encode(), JSON_PATCH)
    assert reply.status == 422 and _status(reply)["reason"] == "Invalid"


def test_merge_patch_that_is_an_array_is_400(fuzz):
    # handlers/patch.go: with fieldValidation Warn (the default) or Strict the patch is first
    # strictly decoded into a map, which fails: BadRequest "error decoding patch: ...".
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), b'[{"data": {"a": "2"}}]', MERGE)
    assert reply.status == 400
    assert _status(reply)["message"] == ("error decoding patch: json: cannot unmarshal array into Go value "
                                         "of type map[string]interface {}")


def test_text_plain_is_415(fuzz):
    for method, url in (("POST", KINDS["services"].collection), ("PUT", sentinel_url("services")),
                        ("PATCH", sentinel_url("services"))):
        reply = fuzz.exchange(method, url, json.dumps(service("sentinel-svc")).encode(), "text/plain")
        assert reply.status == 415 and _status(reply)["reason"] == "UnsupportedMediaType", method


def test_strategic_patch_with_unknown_directive_is_500_as_upstream(fuzz):
    # strategicpatch's ErrBadPatchType is a plain error: the real apiserver answers 500.
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), b'{"$patch": "bogus"}', STRATEGIC)
    assert reply.status == 500
    assert _status(reply)["message"].startswith("unknown patch type: bogus in map: ")


# ---- bugs the fuzzers found, each pinned by its own test -------------------------------------


def test_negative_limit_lists_everything(fuzz):
    reply = fuzz.exchange("GET", KINDS["configmaps"].collection + "?limit=-1")
    assert reply.status == 200


def test_put_without_name_is_rejected(fuzz):
    reply = fuzz.exchange("PUT", sentinel_url("configmaps") + "?dryRun=All", b'{"data": {"a": "wiped"}}', JSON,
                          dry_run=True)
    assert reply.status == 400
    assert _status(reply)["message"] == ("the name of the object (sentinel-cm based on URL) was undeterminable: "
                                         "name must be provided")


GO_MAX_DEPTH = 10000  # encoding/json and go-yaml refuse documents nested deeper than this


@pytest.mark.parametrize("method,content_type,body", [
    ("POST", JSON, b"[" * (GO_MAX_DEPTH + 1) + b"]" * (GO_MAX_DEPTH + 1)),
    ("POST", YAML, b"[" * (GO_MAX_DEPTH + 1) + b"]" * (GO_MAX_DEPTH + 1)),
    ("PATCH", MERGE, b'{"data":' * (GO_MAX_DEPTH + 1) + b"{}" + b"}" * (GO_MAX_DEPTH + 1)),
    ("PATCH", JSON_PATCH, b'[{"op":"add","path":"/data/x","value":' + b"[" * GO_MAX_DEPTH
     + b"]" * GO_MAX_DEPTH + b"}]"),
], ids=["json-body", "yaml-body", "merge-patch", "json-patch"])
def test_too_deeply_nested_documents_are_400(fuzz, method, content_type, body):
    url = KINDS["configmaps"].collection if method == "POST" else sentinel_url("configmaps")
    reply = fuzz.exchange(method, url, body, content_type)
    assert reply.status == 400


def test_lone_surrogate_escape_is_accepted(fuzz):
    body = b'{"metadata": {"name": "fz-surrogate"}, "data": {"a": "\\ud800"}}'
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection, body, JSON)
    assert reply.status == 201, reply.body[:300]
    assert json.loads(reply.body)["data"]["a"] == "\ufffd"


@pytest.mark.parametrize("param", ["dryRun=bogus", "fieldValidation=bogus"])
def test_bad_write_options_are_422(fuzz, param):
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection + "?" + param,
                          json.dumps(configmap("fz-opts")).encode(), JSON)
    assert reply.status == 422
    assert _status(reply)["message"].startswith('CreateOptions.meta.k8s.io "" is invalid: ')


def test_patch_result_of_wrong_type_is_422(fuzz):
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), b'{"data": "not-a-map"}', MERGE)
    assert reply.status == 422
    assert [c["field"] for c in _status(reply)["details"]["causes"]] == ["patch"]


def test_unservable_accept_is_406(fuzz):
    reply = fuzz.client.send("GET", sentinel_url("configmaps"), accept="text/html")
    assert reply.status == 406


@pytest.mark.parametrize("body", [b"[1]", b'{"target": 5}'])
def test_malformed_binding_is_400(fuzz, body):
    reply = fuzz.exchange("POST", f"{KINDS['pods'].collection}/fz-missing/binding", body, JSON)
    assert reply.status == 400


def test_garbage_patch_of_missing_object_is_404(fuzz):
    reply = fuzz.exchange("PATCH", f"{KINDS['configmaps'].collection}/fz-missing", b"garbage", MERGE)
    assert reply.status == 404


@pytest.mark.parametrize("content_type", ["text/yaml", "application/x-yaml"])
def test_unregistered_yaml_media_types_are_415(fuzz, content_type):
    name = "fz-yaml-" + content_type.split("/")[0]
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection, yaml.safe_dump(configmap(name)).encode(),
                          content_type)
    assert reply.status == 415


def test_newline_in_path_is_a_status_404(fuzz):
    reply = fuzz.exchange("GET", f"/api/v1/namespaces/{SENTINEL_NS}/configmaps/a%0Ab")
    assert reply.status == 404


def test_huge_body_with_unsupported_type_is_415(fuzz):
    body = json.dumps(configmap("fz-huge-text")).encode() + b" " * MAX_BODY
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection, body, "text/plain")
    assert reply.status == 415


def test_apply_patch_with_wrongly_typed_type_meta_is_400(fuzz):
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps") + "?fieldManager=fuzz&dryRun=All",
                          b'{"apiVersion": true}', "application/apply-patch+yaml", dry_run=True)
    assert reply.status == 400


def test_integers_beyond_int64_are_not_a_500(fuzz):
    reply = fuzz.exchange("PATCH", sentinel_url("configmaps"), b'{"apiVersion": -9223372036854775809}', MERGE)
    assert reply.status in (400, 422)
    reply = fuzz.exchange("POST", KINDS["configmaps"].collection,
                          b'{"metadata": {"name": "fz-big", "labels": {"a": 99999999999999999999}}}', JSON)
    assert reply.status == 400


def test_scale_patch_result_of_wrong_type_is_422(fuzz):
    reply = fuzz.exchange("PATCH", sentinel_url("deployments") + "/scale", b'{"spec": true}', MERGE)
    assert reply.status == 422
    assert [c["field"] for c in _status(reply)["details"]["causes"]] == ["patch"]
