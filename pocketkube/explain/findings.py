"""What is wrong with a Service, an Ingress, a Pod or an Endpoints object, and what to do: pure
checks over API objects, as an experienced engineer would make them.

`explain(kind, namespace, name, cluster)` takes a `Cluster` (the objects read from the API, and
what each pod's network namespace listens on when that could be asked) and returns a `Report`:
its findings, each naming the object and the field it is about, a plain sentence, and where
one exists the command that fixes it (`fix`) or shows more (`check`). Levels: `error` (traffic
does not arrive), `warning` (some traffic does not arrive, or will not in some case), `info`
(what the object does: addresses, who reaches it and how, DNS names). A report without errors
and warnings is healthy and renders as one line.

Readiness, named ports and selectors are judged with the endpoint controllers' own logic
(controllers/endpointutil.py), Ingress classes, backends, TLS secrets and conflicts with the
Ingress controller's (ingress/routes.py), so `explain` says what the cluster itself decides.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from dataclasses import asdict, dataclass, field

from pocketkube.controllers.endpointutil import (LABEL_SERVICE_NAME, find_port, is_pod_ready, is_pod_terminal,
                                                 pod_ips)
from pocketkube.core.cluster import CLUSTER_DOMAIN
from pocketkube.core.objects import labels_of as _labels
from pocketkube.core.objects import name_of as _name
from pocketkube.core.objects import namespace_of as _ns

ERROR, WARNING, INFO = "error", "warning", "info"
KINDS = {"svc": "Service", "service": "Service", "services": "Service",
         "ing": "Ingress", "ingress": "Ingress", "ingresses": "Ingress",
         "po": "Pod", "pod": "Pod", "pods": "Pod",
         "ep": "Endpoints", "endpoints": "Endpoints"}
DEFAULT_AFFINITY_SECONDS = 10800
WIDTH = 100


@dataclass
class Finding:
    level: str       # error, warning, info
    object: str      # "Service default/web"
    field: str       # "spec.selector"
    message: str
    fix: str = ""    # a command that fixes it
    check: str = ""  # a command that shows more
    code: str = ""   # a stable name for scripts: "selector-matches-no-pod"


@dataclass
class Report:
    target: str      # "Service default/web"
    summary: str     # the one line it gets when healthy
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level in (ERROR, WARNING)]

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def headline(self) -> str:
        """The healthy summary, or how many errors and warnings there are."""
        if self.healthy:
            return self.summary
        errors = sum(f.level == ERROR for f in self.problems)
        return f"{self.target}: {errors} error(s), {len(self.problems) - errors} warning(s)"


@dataclass
class Cluster:
    """What explain reads. `listening`: "namespace/pod" -> {(protocol, port)} the pod's network
    namespace listens on, on its pod address; a pod that is not there could not be asked
    (another machine, not running, not root). `loopback`: what it listens on only on loopback."""

    services: list[dict] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)
    endpoints: list[dict] = field(default_factory=list)
    slices: list[dict] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    ingresses: list[dict] = field(default_factory=list)
    ingress_classes: list[dict] = field(default_factory=list)
    secrets: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    listening: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    loopback: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # bound to 127.0.0.1 or ::1 only
    cluster_domain: str = CLUSTER_DOMAIN

    def find(self, items: list[dict], namespace: str, name: str) -> dict | None:
        return next((o for o in items if _ns(o) == namespace and _name(o) == name), None)

    def slices_of(self, namespace: str, service: str) -> list[dict]:
        return [s for s in self.slices if _ns(s) == namespace
                and ((s.get("metadata") or {}).get("labels") or {}).get(LABEL_SERVICE_NAME) == service]

    def node_address(self, node_name: str) -> str:
        node = next((n for n in self.nodes if _name(n) == node_name), None)
        for a in ((node or {}).get("status") or {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return a.get("address", "")
        return ""


# ---- small helpers ------------------------------------------------------------------------------

def object_key(obj: dict) -> str:
    """"namespace/name": the key of `Cluster.listening`."""
    return f"{_ns(obj)}/{_name(obj)}"


def _q(value) -> str:
    return shlex.quote(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), with a swap of two
    neighbouring letters counting once (`ngnix` is one slip from `nginx`)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def similar(a: str, b: str) -> bool:
    """Close enough to be a typo of each other (case, one or two slips in a longer word)."""
    if a == b:
        return False
    if a.lower() == b.lower():
        return True
    return edit_distance(a, b) <= max(1, min(len(a), len(b)) // 4)


def _pairs(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "no labels"


def _names_list(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _declared_ports(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    out = []
    for c in spec.get("containers") or []:
        out += [dict(p, container=c.get("name", "")) for p in c.get("ports") or []]
    for c in spec.get("initContainers") or []:
        if c.get("restartPolicy") == "Always":
            out += [dict(p, container=c.get("name", "")) for p in c.get("ports") or []]
    return out


def _port_text(p: dict) -> str:
    name = f"{p['name']} " if p.get("name") else ""
    return f"{name}{p.get('containerPort')}/{p.get('protocol') or 'TCP'}"


def _listen_text(ports: set[tuple[str, int]]) -> str:
    return ", ".join(f"{port}/{proto}" for proto, port in sorted(ports, key=lambda x: (x[1], x[0]))) or "nothing"


def pod_problem(pod: dict, events: list[dict]) -> str:
    """Why a pod is not Ready, in one sentence ("" when it is)."""
    if is_pod_ready(pod):
        return ""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "it is terminating"
    phase = status.get("phase") or "Pending"
    if is_pod_terminal(pod):
        return f"it has finished (phase {phase})"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"it is not scheduled: {condition.get('message') or condition.get('reason') or 'no node fits'}"
    reasons = []
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    for s in status.get("initContainerStatuses") or []:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            reasons.append(f"init container {s.get('name')} is waiting: {_waiting(waiting)}")
    for c in (pod.get("spec") or {}).get("containers") or []:
        s = statuses.get(c.get("name"))
        if s is None:
            reasons.append(f"container {c.get('name')} has not started")
            continue
        state = s.get("state") or {}
        if state.get("waiting"):
            reasons.append(f"container {c.get('name')} is waiting: {_waiting(state['waiting'])}")
        elif state.get("terminated"):
            t = state["terminated"]
            reasons.append(f"container {c.get('name')} exited ({t.get('reason') or 'Error'}, exit code "
                           f"{t.get('exitCode')})")
        elif not s.get("ready"):
            probe = c.get("readinessProbe")
            failed = _last_event(events, pod, "Unhealthy", "Readiness")
            if failed:
                reasons.append(f"container {c.get('name')} runs but its readiness probe fails: {failed}")
            elif probe:
                reasons.append(f"container {c.get('name')} runs but its readiness probe ({_probe_text(probe)}) "
                               "has not passed yet")
            else:
                reasons.append(f"container {c.get('name')} runs but is not ready yet")
    return "; ".join(reasons) or f"phase {phase}, not Ready"


def _waiting(waiting: dict) -> str:
    message = (waiting.get("message") or "").strip().splitlines()
    return waiting.get("reason", "waiting") + (f" ({message[0][:120]})" if message else "")


def _last_event(events: list[dict], pod: dict, reason: str, starts: str) -> str:
    """The newest message of event `reason` about this pod that starts with `starts`."""
    mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") == (pod.get("metadata") or {}).get("uid")
            or ((e.get("involvedObject") or {}).get("name") == _name(pod)
                and (e.get("involvedObject") or {}).get("namespace") == _ns(pod)
                and (e.get("involvedObject") or {}).get("kind") == "Pod")]
    mine = [e for e in mine if e.get("reason") == reason and (e.get("message") or "").startswith(starts)]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return (mine[-1].get("message") or "").strip() if mine else ""


def _probe_text(probe: dict) -> str:
    if probe.get("httpGet"):
        h = probe["httpGet"]
        return f"HTTP GET {h.get('path', '/')} on port {h.get('port')}"
    if probe.get("tcpSocket"):
        return f"TCP connect to port {probe['tcpSocket'].get('port')}"
    if probe.get("exec"):
        return "exec " + " ".join(probe["exec"].get("command") or [])
    if probe.get("grpc"):
        return f"gRPC on port {probe['grpc'].get('port')}"
    return "a probe"


# ---- Services -----------------------------------------------------------------------------------

@dataclass
class _Collector:
    """The findings about one object, as the checks add them."""

    label: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, fld: str, message: str, fix: str = "", check: str = "", code: str = "") -> None:
        self.findings.append(Finding(level, self.label, fld, message, fix, check, code))


@dataclass
class _Svc(_Collector):
    """One Service and what it selects, shared by the checks."""

    obj: dict = field(default_factory=dict)
    cluster: Cluster = field(default_factory=Cluster)

    @property
    def spec(self) -> dict:
        return self.obj.get("spec") or {}

    @property
    def ns(self) -> str:
        return _ns(self.obj)

    @property
    def name(self) -> str:
        return _name(self.obj)

    def selected(self) -> list[dict]:
        """The pods the Service's selector picks that can be endpoints (not finished, an IP)."""
        selector = self.spec.get("selector") or {}
        return [p for p in self.cluster.pods if _ns(p) == self.ns and selector
                and all(_labels(p).get(k) == v for k, v in selector.items()) and not is_pod_terminal(p)]

    def patch(self, body: dict, kind: str = "service", name: str = "") -> str:
        return f"kubectl patch {kind} {name or self.name} -n {self.ns} -p {_q(body)}"


def explain_service(cluster: Cluster, namespace: str, name: str, label_kind: str = "Service") -> Report:
    svc_obj = cluster.find(cluster.services, namespace, name)
    target = f"{label_kind} {namespace}/{name}"
    if svc_obj is None:
        return _missing(target, "Service", namespace, name, "svc")
    s = _Svc(f"Service {namespace}/{name}", obj=svc_obj, cluster=cluster)
    spec = s.spec
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        s.add(INFO, "spec.externalName", f"an ExternalName Service: the cluster DNS answers {_fqdn(s)} with a CNAME "
              f"to {spec.get('externalName')}; nothing is proxied and no pod is selected", code="external-name")
        _dns(s)
        return Report(target, f"{target} is healthy: a CNAME to {spec.get('externalName')}.", s.findings)
    pods = _check_selection(s)
    _check_ports(s, pods)
    _check_endpoint_objects(s)
    if label_kind == "Service":
        _check_type(s, pods)
        _dns(s)
    ready = [p for p in pods if is_pod_ready(p)]
    where = "headless" if spec.get("clusterIP") == "None" else f"{kind} {spec.get('clusterIP', '')}"
    ports = ", ".join(f"{p.get('port')}/{p.get('protocol') or 'TCP'} -> {p.get('targetPort', p.get('port'))}"
                      for p in spec.get("ports") or [])
    backing = (f"{len(ready)} of {len(pods)} selected pods Ready" if spec.get("selector")
               else f"{_endpoint_count(s)} manual endpoints")
    return Report(target, f"{target} is healthy: {where}, {ports or 'no ports'}, {backing}.", s.findings)


def _missing(target: str, kind: str, namespace: str, name: str, short: str) -> Report:
    return Report(target, "", [Finding(ERROR, target, "metadata.name", f'{kind} "{name}" not found in namespace '
                                       f'"{namespace}"', check=f"kubectl get {short} -n {namespace}",
                                       code="not-found")])


def _endpoint_count(s: _Svc) -> int:
    return len({a for es in s.cluster.slices_of(s.ns, s.name) for e in es.get("endpoints") or []
                for a in e.get("addresses") or []})


def _check_selection(s: _Svc) -> list[dict]:
    selector = s.spec.get("selector") or {}
    if not selector:
        manual = s.cluster.find(s.cluster.endpoints, s.ns, s.name)
        addresses = [a.get("ip") for sub in (manual or {}).get("subsets") or []
                     for a in (sub.get("addresses") or []) + (sub.get("notReadyAddresses") or [])]
        slice_addresses = [a for es in s.cluster.slices_of(s.ns, s.name) for e in es.get("endpoints") or []
                           for a in e.get("addresses") or []]
        if not addresses and not slice_addresses:
            s.add(ERROR, "spec.selector", "the Service has no selector and no Endpoints or EndpointSlice of its "
                  "own, so it has no endpoints: connections to it are refused. Give it a selector, or write "
                  f"an Endpoints object named {s.name} with the backends' addresses",
                  fix=s.patch({"spec": {"selector": {"app": s.name}}}) + "   # with your pods' labels",
                  code="selectorless-without-endpoints")
        else:
            s.add(INFO, "spec.selector", "no selector: the endpoints are written by hand "
                  f"({_names_list(sorted(set(addresses or slice_addresses)))}); nothing keeps them current",
                  code="selectorless")
        return []
    pods = s.selected()
    text = _pairs(selector)
    if not pods:
        _no_pod_matches(s, selector, text)
        return pods
    ready = [p for p in pods if is_pod_ready(p)]
    publish = s.spec.get("publishNotReadyAddresses")
    unready = [p for p in pods if not is_pod_ready(p)]
    details = "; ".join(f"pod {_name(p)}: {pod_problem(p, s.cluster.events)}" for p in unready[:5])
    first = unready[0] if unready else None
    check = f"kubectl describe pod {_name(first)} -n {s.ns}" if first else ""
    if not ready and not publish:
        s.add(ERROR, "status.conditions[Ready]", f"{len(pods)} pod(s) match selector {text} but none is Ready, so "
              f"the Service has no ready endpoints: {details}", check=check, code="no-ready-pods")
    elif unready and not publish:
        s.add(WARNING, "status.conditions[Ready]", f"{len(unready)} of {len(pods)} selected pods are not Ready and get "
              f"no traffic: {details}", check=check, code="some-pods-not-ready")
    elif unready:
        s.add(INFO, "spec.publishNotReadyAddresses", f"publishNotReadyAddresses: {len(unready)} pod(s) that are "
              "not Ready still get traffic", code="publish-not-ready")
    return pods


def _no_pod_matches(s: _Svc, selector: dict, text: str) -> None:
    near: dict[tuple, list[str]] = {}
    for pod in s.cluster.pods:
        if _ns(pod) != s.ns:
            continue
        labels = _labels(pod)
        diffs, exact = [], 0
        for k, v in selector.items():
            if labels.get(k) == v:
                exact += 1
            elif k in labels and similar(labels[k], v):
                diffs.append((k, v, k, labels[k]))
            else:
                other = next(((lk, lv) for lk, lv in labels.items() if similar(lk, k) and (lv == v or similar(lv, v))),
                             None)
                if other is None:
                    diffs.append((k, v, None, labels.get(k)))
                else:
                    diffs.append((k, v, *other))
        if any(d[2] is not None for d in diffs) or (exact and diffs):
            near.setdefault(tuple(diffs), []).append(_name(pod))
    elsewhere = sorted(object_key(p) for p in s.cluster.pods if _ns(p) != s.ns
                       and all(_labels(p).get(k) == v for k, v in selector.items()))
    message = f"selector {text} matches no pod in namespace {s.ns}, so the Service has no endpoints"
    fix = ""
    if near:
        best = sorted(near.items(), key=lambda kv: (sum(d[2] is None for d in kv[0]), -len(kv[1])))
        parts = []
        for diffs, names in best[:3]:
            said = []
            many = len(names) > 1
            for k, v, pk, pv in diffs:
                if pk is None:
                    said.append(f"{'lack' if many else 'lacks'} {k}={v}" + (f" ({k}={pv})" if pv is not None else ""))
                else:
                    said.append(f"{'have' if many else 'has'} {pk}={pv} where the selector wants {k}={v}")
            parts.append(f"pod{'s' if len(names) > 1 else ''} {_names_list(sorted(names), 3)} "
                         f"{'; '.join(said)}")
        message += ". Pods with similar labels: " + "; ".join(parts)
        diffs = best[0][0]
        if all(d[2] is not None for d in diffs):
            patch: dict = {}
            for k, _v, pk, pv in diffs:
                if pk != k:
                    patch[k] = None
                patch[pk] = pv
            fix = s.patch({"spec": {"selector": patch}}) + "   # or fix the pods' labels"
    if elsewhere:
        message += (f". Pods in other namespaces match ({_names_list(elsewhere)}), but a Service selects only "
                    f"pods of its own namespace")
    s.add(ERROR, "spec.selector", message, fix=fix, check=f"kubectl get pods -n {s.ns} --show-labels",
          code="selector-matches-no-pod")


def _check_ports(s: _Svc, pods: list[dict]) -> None:
    running = [p for p in pods if pod_ips(p)]
    unasked = [_name(p) for p in running if object_key(p) not in s.cluster.listening
               and (p.get("status") or {}).get("phase") == "Running"]
    if unasked:
        s.add(INFO, "spec.ports[].targetPort", f"what pods {_names_list(unasked)} listen on was not asked (that "
              "needs root on the machine the cluster runs on): only the ports they declare were compared",
              code="listening-not-asked")
    for i, port in enumerate(s.spec.get("ports") or []):
        proto = port.get("protocol") or "TCP"
        target = port.get("targetPort", port.get("port"))
        fld = f"spec.ports[{i}].targetPort"
        shown = f"port {port.get('port')}/{proto}" + (f" ({port['name']})" if port.get("name") else "")
        if isinstance(target, str) and running:
            _check_named_port(s, running, port, i, target, proto, shown)
        numbers: dict[int, list[dict]] = {}
        for pod in running:
            number = find_port(pod, port)
            if number is not None:
                numbers.setdefault(number, []).append(pod)
        for number, group in sorted(numbers.items()):
            declared_any = [p for p in group if _declared_ports(p)]
            if isinstance(target, int):
                undeclared = [p for p in declared_any if not any(
                    d.get("containerPort") == number and (d.get("protocol") or "TCP") == proto
                    for d in _declared_ports(p))]
                other_proto = [p for p in undeclared if any(d.get("containerPort") == number for d in _declared_ports(p))]
                if other_proto:
                    protos = sorted({d.get("protocol") or "TCP" for p in other_proto for d in _declared_ports(p)
                                     if d.get("containerPort") == number})
                    s.add(WARNING, f"spec.ports[{i}].protocol", f"{shown} sends {proto} to port {number}, but pods "
                          f"{_names_list([_name(p) for p in other_proto])} declare port {number} as "
                          f"{'/'.join(protos)}", fix=_json_patch(s, f"/spec/ports/{i}/protocol", protos[0]),
                          code="protocol-mismatch")
                elif undeclared:
                    ports = sorted({_port_text(d) for p in undeclared for d in _declared_ports(p)})
                    s.add(INFO if _all_listen(s, undeclared, proto, number) else WARNING, fld,
                          f"{shown} targets port {number}, which pods "
                          f"{_names_list([_name(p) for p in undeclared])} do not declare (they declare "
                          f"{', '.join(ports)}); declaring is optional, listening is what counts",
                          code="target-port-not-declared")
            deaf = [(p, s.cluster.listening[object_key(p)]) for p in group if object_key(p) in s.cluster.listening
                    and (proto, number) not in s.cluster.listening[object_key(p)]]
            if deaf:
                heard = set().union(*(ls for _, ls in deaf))
                same_proto = sorted({n for pr, n in heard if pr == proto})
                other = sorted({pr for pr, n in heard if n == number and pr != proto})
                message = (f"{shown} sends to port {number}/{proto}, but nothing listens there in pods "
                           f"{_names_list([_name(p) for p, _ in deaf])} (they listen on {_listen_text(heard)})")
                fix = ""
                inside = [_name(p) for p, _ in deaf if (proto, number) in s.cluster.loopback.get(object_key(p), ())]
                if inside:
                    message += (f"; {_names_list(inside)} listen(s) on {number}/{proto} on 127.0.0.1 only, which "
                                "only the pod itself reaches: the program must listen on 0.0.0.0")
                if other:
                    message += f": port {number} is open for {'/'.join(other)}, not {proto}"
                    fix = _json_patch(s, f"/spec/ports/{i}/protocol", other[0])
                elif len(same_proto) == 1:
                    fix = _json_patch(s, f"/spec/ports/{i}/targetPort", same_proto[0])
                level = ERROR if len(deaf) == len(group) else WARNING
                s.add(level, fld, message + "; connections sent there fail", fix=fix,
                      check=f"kubectl logs {_name(deaf[0][0])} -n {s.ns}",
                      code="protocol-mismatch" if other else "target-port-not-listening")


def _all_listen(s: _Svc, pods: list[dict], proto: str, number: int) -> bool:
    return all((proto, number) in s.cluster.listening.get(object_key(p), set()) for p in pods)


def _check_named_port(s: _Svc, pods: list[dict], port: dict, i: int, target: str, proto: str, shown: str) -> None:
    fld = f"spec.ports[{i}].targetPort"
    lacking = [p for p in pods if find_port(p, port) is None]
    if not lacking:
        return
    other_proto = sorted({d.get("protocol") or "TCP" for p in lacking for d in _declared_ports(p)
                          if d.get("name") == target})
    declared = sorted({_port_text(d) for p in lacking for d in _declared_ports(p)})
    if other_proto:
        s.add(ERROR if len(lacking) == len(pods) else WARNING, f"spec.ports[{i}].protocol",
              f"{shown} targets the named port {target!r} over {proto}, but pods "
              f"{_names_list([_name(p) for p in lacking])} declare {target!r} as {'/'.join(other_proto)}: a named "
              "port resolves only with the same protocol, so those pods are left out",
              fix=_json_patch(s, f"/spec/ports/{i}/protocol", other_proto[0]), code="protocol-mismatch")
        return
    numbers = sorted({d.get("containerPort") for p in lacking for d in _declared_ports(p)
                      if (d.get("protocol") or "TCP") == proto})
    fix = _json_patch(s, f"/spec/ports/{i}/targetPort", numbers[0]) if len(numbers) == 1 else ""
    if len(lacking) == len(pods):
        s.add(ERROR, fld, f"{shown} targets the named port {target!r}, which no selected pod declares (they "
              f"declare {', '.join(declared) or 'no ports'}), so this port has no endpoints", fix=fix,
              code="named-port-missing")
    else:
        s.add(WARNING, fld, f"{shown} targets the named port {target!r}, which pods "
              f"{_names_list([_name(p) for p in lacking])} do not declare: they are left out of this port's "
              f"endpoints ({len(pods) - len(lacking)} of {len(pods)} pods have it)", code="named-port-missing-in-some")


def _json_patch(s: _Svc, path: str, value) -> str:
    return (f"kubectl patch service {s.name} -n {s.ns} --type=json -p "
            f"{_q([{'op': 'replace', 'path': path, 'value': value}])}")


def _endpoint_set_from_endpoints(ep: dict) -> set[tuple]:
    out = set()
    for sub in ep.get("subsets") or []:
        for ready, key in ((True, "addresses"), (False, "notReadyAddresses")):
            for a in sub.get(key) or []:
                for p in sub.get("ports") or []:
                    out.add((a.get("ip"), p.get("name") or "", p.get("port"), p.get("protocol") or "TCP", ready))
    return out


def _endpoint_set_from_slices(slices: list[dict]) -> set[tuple]:
    out = set()
    for es in slices:
        if es.get("addressType", "IPv4") != "IPv4":
            continue
        for e in es.get("endpoints") or []:
            ready = (e.get("conditions") or {}).get("ready") is not False
            if (e.get("conditions") or {}).get("terminating"):
                continue  # Endpoints leave terminating pods out
            for a in e.get("addresses") or []:
                for p in es.get("ports") or []:
                    out.add((a, p.get("name") or "", p.get("port"), p.get("protocol") or "TCP", ready))
    return out


def _check_endpoint_objects(s: _Svc) -> None:
    ep = s.cluster.find(s.cluster.endpoints, s.ns, s.name)
    slices = s.cluster.slices_of(s.ns, s.name)
    if not s.spec.get("selector") and ep is None:
        return  # hand-made slices alone are fine; no Endpoints at all is told by the selector check
    if ep is None:
        if slices:
            s.add(WARNING, "Endpoints", f"EndpointSlices exist for the Service but no Endpoints object {s.name}: "
                  "the endpoints controller has not written it yet (tools that read Endpoints see nothing)",
                  check=f"kubectl get endpoints,endpointslices -n {s.ns} -l {LABEL_SERVICE_NAME}={s.name}",
                  code="endpoints-missing")
        return
    a, b = _endpoint_set_from_endpoints(ep), _endpoint_set_from_slices(slices)
    if a != b:
        def show(items):
            return _names_list([f"{ip}:{port}{'' if ready else ' (not ready)'}" for ip, _n, port, _p, ready
                                in sorted(items, key=str)], 4) or "nothing"
        s.add(WARNING, "Endpoints/EndpointSlices", f"Endpoints {s.name} and its EndpointSlices disagree: only in "
              f"Endpoints: {show(a - b)}; only in EndpointSlices: {show(b - a)}. The proxy and DNS read the slices"
              + ("; a hand-written Endpoints is mirrored into slices, so the mirroring controller lags or "
                 "skipped it" if not s.spec.get("selector") else "; the controllers have not caught up"),
              check=f"kubectl get endpoints,endpointslices -n {s.ns} -l {LABEL_SERVICE_NAME}={s.name} -o wide",
              code="endpoints-slices-disagree")


def _ready_nodes(s: _Svc) -> set[str]:
    """Nodes that hold a ready endpoint of the Service (as the proxy sees it: the slices)."""
    return {e.get("nodeName") for es in s.cluster.slices_of(s.ns, s.name) for e in es.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") is not False and e.get("nodeName")}


def _check_type(s: _Svc, pods: list[dict]) -> None:
    spec = s.spec
    kind = spec.get("type") or "ClusterIP"
    ports = spec.get("ports") or []
    nodes = sorted(_name(n) for n in s.cluster.nodes)
    local_nodes = _ready_nodes(s)
    missing = [n for n in nodes if n not in local_nodes]
    cip = spec.get("clusterIP")
    if cip == "None":
        s.add(INFO, "spec.clusterIP", "headless: no virtual address and no proxying; the cluster DNS answers "
              f"{_fqdn(s)} with the ready pods' own addresses, and clients connect to the pods' ports directly",
              code="headless")
    elif cip:
        first_port = ports[0].get("port") if ports else ""
        s.add(INFO, "spec.clusterIP", f"ClusterIP {cip}:{first_port}: from a pod or a node, the proxy of the node the "
              f"connection starts on picks a ready endpoint; the host reaches it too (it routes the service range "
              f"through the first node)", code="cluster-ip")
    if spec.get("internalTrafficPolicy") == "Local" and cip and cip != "None":
        if missing:
            s.add(WARNING, "spec.internalTrafficPolicy", f"internalTrafficPolicy Local: a connection to the ClusterIP "
                  f"from a pod or the node itself goes only to endpoints on that node, so on "
                  f"{_names_list(missing)} (no ready endpoint there) it is dropped, and so is one from the host "
                  "when the first node has none", fix=s.patch({"spec": {"internalTrafficPolicy": "Cluster"}}),
                  code="internal-local-drops")
        else:
            s.add(INFO, "spec.internalTrafficPolicy", "internalTrafficPolicy Local: each node sends ClusterIP "
                  "traffic only to its own endpoints (every node has one)", code="internal-local")
    if kind in ("NodePort", "LoadBalancer"):
        node_ports = ", ".join(f"{p.get('nodePort')}/{p.get('protocol') or 'TCP'}" for p in ports if p.get("nodePort"))
        addrs = [s.cluster.node_address(n) for n in nodes]
        example = f"{addrs[0]}:{ports[0].get('nodePort')}" if addrs and addrs[0] and ports else ""
        s.add(INFO, "spec.ports[].nodePort", f"nodePort {node_ports or '(none allocated)'} on every node address"
              + (f" (e.g. {example})" if example else "") + "; from the host and from pods alike",
              code="node-port")
        local = spec.get("externalTrafficPolicy") == "Local"
        if local and missing:
            s.add(WARNING, "spec.externalTrafficPolicy", "externalTrafficPolicy Local: a request from the host (or "
                  f"from outside) to the nodePort of {_names_list(missing)}, which hold(s) no ready endpoint, is "
                  "dropped; pods and the nodes themselves still reach every endpoint. The client's address is kept",
                  fix=s.patch({"spec": {"externalTrafficPolicy": "Cluster"}}), code="external-local-drops")
        elif local:
            s.add(INFO, "spec.externalTrafficPolicy", "externalTrafficPolicy Local: external requests stay on the "
                  "node they reach and keep the client's address (every node has a ready endpoint)",
                  code="external-local")
        else:
            s.add(INFO, "spec.externalTrafficPolicy", "externalTrafficPolicy Cluster: any node forwards to any "
                  "endpoint; the endpoint sees the node's address as the client when the request came from outside "
                  "the cluster", code="external-cluster")
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in
                   ((s.obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
        if not ingress:
            s.add(WARNING, "status.loadBalancer.ingress", "no load-balancer address yet (EXTERNAL-IP <pending>): "
                  "the pool may be exhausted, or the Service asks for a class no controller serves",
                  check=f"kubectl describe service {s.name} -n {s.ns}", code="lb-pending")
        else:
            how = ("announced on the node network by a node that holds a ready endpoint" if spec.get(
                "externalTrafficPolicy") == "Local" else "announced on the node network by one node")
            s.add(INFO, "status.loadBalancer.ingress", f"load-balancer address {', '.join(ingress)}, {how}; the host "
                  "reaches it directly", code="lb-address")
            if spec.get("externalTrafficPolicy") == "Local" and not local_nodes:
                s.add(ERROR, "status.loadBalancer.ingress", "externalTrafficPolicy Local and no ready endpoint on any "
                      "node: no node announces the address, so the host's requests find nobody (no route to host)",
                      code="lb-unannounced")
        if spec.get("loadBalancerSourceRanges"):
            s.add(INFO, "spec.loadBalancerSourceRanges", "only clients in "
                  f"{', '.join(spec['loadBalancerSourceRanges'])} may use the load-balancer address",
                  code="lb-source-ranges")
    for ip in spec.get("externalIPs") or []:
        node_owned = any(s.cluster.node_address(n) == ip for n in nodes)
        s.add(INFO, "spec.externalIPs", f"externalIP {ip}: every node's proxy sends packets for {ip} on the "
              "Service's ports to an endpoint" + ("; it is a node's address, so the host reaches it" if node_owned else
                                                   "; nothing routes it to a node for you: clients must send it "
                                                   "to a node themselves"), code="external-ip")
    if spec.get("sessionAffinity") == "ClientIP":
        seconds = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
                   or DEFAULT_AFFINITY_SECONDS)
        s.add(INFO, "spec.sessionAffinity", f"ClientIP affinity: connections from one client address go to the same "
              f"endpoint until it is idle for {seconds}s; requests the proxy masquerades all come from the node's "
              "address, so they share one endpoint", code="affinity")


def _fqdn(s: _Svc) -> str:
    return f"{s.name}.{s.ns}.svc.{s.cluster.cluster_domain}"


def _dns(s: _Svc) -> None:
    fqdn = _fqdn(s)
    names = (f"DNS: {fqdn} from anywhere; {s.name}.{s.ns} and {s.name}.{s.ns}.svc from pods of any namespace; "
             f"the short name {s.name} only from pods in namespace {s.ns} (their search list starts with "
             f"{s.ns}.svc.{s.cluster.cluster_domain})")
    named = [p for p in s.spec.get("ports") or [] if p.get("name")]
    if named:
        names += "; SRV " + ", ".join(f"_{p['name']}._{(p.get('protocol') or 'TCP').lower()}.{fqdn}" for p in named)
    s.add(INFO, "metadata.name", names, check=f"pocketkube explain-dns {s.name} -n {s.ns}", code="dns")


# ---- Endpoints, Pods ------------------------------------------------------------------------------

def explain_endpoints(cluster: Cluster, namespace: str, name: str) -> Report:
    target = f"Endpoints {namespace}/{name}"
    ep = cluster.find(cluster.endpoints, namespace, name)
    svc = cluster.find(cluster.services, namespace, name)
    if ep is None and svc is None:
        return _missing(target, "Endpoints", namespace, name, "endpoints")
    if svc is None:
        return Report(target, "", [Finding(WARNING, target, "metadata.name", f'no Service "{name}" in namespace '
                                           f'"{namespace}": nothing sends traffic to these endpoints',
                                           check=f"kubectl get svc -n {namespace}", code="no-service")])
    report = explain_service(cluster, namespace, name, label_kind="Endpoints")
    count = len(_endpoint_set_from_endpoints(ep or {}))
    report.summary = f"{target} is healthy: {count} address/port pair(s), in step with its EndpointSlices."
    return report


def explain_pod(cluster: Cluster, namespace: str, name: str) -> Report:
    target = f"Pod {namespace}/{name}"
    pod = cluster.find(cluster.pods, namespace, name)
    if pod is None:
        return _missing(target, "Pod", namespace, name, "pods")
    notes = _Collector(target)
    add = notes.add

    problem = pod_problem(pod, cluster.events)
    if problem:
        add(ERROR, "status.conditions[Ready]", f"not Ready, so no Service sends it traffic: {problem}",
            check=f"kubectl describe pod {name} -n {namespace}", code="pod-not-ready")
    listening = cluster.listening.get(object_key(pod))
    declared = _declared_ports(pod)
    if listening is not None and pod_ips(pod):
        for d in declared:
            pair = (d.get("protocol") or "TCP", d.get("containerPort"))
            if pair not in listening:
                add(WARNING, f"spec.containers[{d['container']}].ports", f"declares {_port_text(d)} but nothing "
                    f"listens there (it listens on {_listen_text(listening)})", code="declared-port-not-listening")
    labels = _labels(pod)
    behind = []
    for svc in cluster.services:
        selector = (svc.get("spec") or {}).get("selector") or {}
        if _ns(svc) != namespace or not selector:
            continue
        if all(labels.get(k) == v for k, v in selector.items()):
            behind.append(_name(svc))
            for i, port in enumerate((svc.get("spec") or {}).get("ports") or []):
                if find_port(pod, port) is None:
                    add(WARNING, "spec.containers[].ports", f"Service {_name(svc)} selects it, but it does not declare "
                        f"the named port {port.get('targetPort')!r} of spec.ports[{i}], so it is not an endpoint of "
                        "that port", code="named-port-missing")
        else:
            near = [(k, v, labels[k]) for k, v in selector.items() if k in labels and similar(labels[k], v)]
            if near and all(labels.get(k) == v or k in {n[0] for n in near} for k, v in selector.items()):
                shown = ", ".join(f"{k}={pv} (the selector wants {k}={v})" for k, v, pv in near)
                add(WARNING, "metadata.labels", f"Service {_name(svc)} almost selects it: {shown}",
                    fix=f"kubectl label pod {name} -n {namespace} --overwrite "
                        + " ".join(f"{k}={v}" for k, v, _ in near) + "   # or fix the Service's selector",
                    code="labels-near-selector")
    ip = (pod.get("status") or {}).get("podIP") or "no IP"
    node = (pod.get("spec") or {}).get("nodeName") or "no node"
    if behind:
        add(INFO, "metadata.labels", f"selected by Service(s) {', '.join(behind)}", code="selected-by")
    summary = (f"{target} is healthy: Running and Ready, {ip} on {node}"
               + (f", behind Service {', '.join(behind)}." if behind else ", selected by no Service."))
    return Report(target, summary, notes.findings)


# ---- Ingresses ------------------------------------------------------------------------------------

@dataclass
class Controller:
    """An Ingress controller pod and the flags that decide which Ingresses it owns."""

    pod: str
    ready: bool
    controller_class: str
    ingress_class: str
    watch_without_class: bool


def ingress_controllers(pods: list[dict]) -> list[Controller]:
    """The pods that run an ingress-nginx controller (its image, or our `ingress-controller` command)."""
    from pocketkube.ingress.routes import CONTROLLER_CLASS, INGRESS_CLASS

    found = []
    for pod in pods:
        for c in (pod.get("spec") or {}).get("containers") or []:
            args = [*(c.get("command") or []), *(c.get("args") or [])]
            if "ingress-nginx/controller" not in (c.get("image") or "") and not any(
                    a.endswith(("nginx-ingress-controller", "ingress-controller")) for a in args[:3]):
                continue
            flags = {}
            for a in args:
                if a.startswith("--") and "=" in a:
                    k, v = a[2:].split("=", 1)
                    flags[k] = v
                elif a.startswith("--"):
                    flags[a[2:]] = "true"
            found.append(Controller(object_key(pod), is_pod_ready(pod), flags.get("controller-class", CONTROLLER_CLASS),
                                    flags.get("ingress-class", INGRESS_CLASS),
                                    flags.get("watch-ingress-without-class", "false").lower() in ("true", "1", "t")))
    return found


def explain_ingress(cluster: Cluster, namespace: str, name: str) -> Report:
    from pocketkube.ingress import routes

    target = f"Ingress {namespace}/{name}"
    ing = cluster.find(cluster.ingresses, namespace, name)
    if ing is None:
        return _missing(target, "Ingress", namespace, name, "ingress")
    notes = _Collector(target)
    add = notes.add

    spec = ing.get("spec") or {}
    classes = {_name(c): c for c in cluster.ingress_classes}
    controllers = ingress_controllers(cluster.pods)
    owner = None
    if not controllers:
        add(ERROR, "spec.ingressClassName", "no Ingress controller runs in the cluster, so nothing serves this "
            "Ingress", fix="pocketkube addons enable ingress", code="no-controller")
    else:
        why_not = []
        for c in controllers:
            settings = routes.Settings(controller_class=c.controller_class, ingress_class=c.ingress_class,
                                       watch_without_class=c.watch_without_class)
            ours, why = routes.class_decision(ing, classes, settings)
            if ours:
                owner = (c, settings, why)
                break
            why_not.append(f"{c.pod}: {why}")
        if owner is None:
            default = next((n for n, c in classes.items() if routes.is_default_class(c)), None)
            usable = next((n for n, c in classes.items() if (c.get("spec") or {}).get("controller") in
                           {x.controller_class for x in controllers}), default)
            add(ERROR, "spec.ingressClassName", "no running controller owns this Ingress, so nothing routes it ("
                + "; ".join(why_not) + ")",
                fix=f"kubectl patch ingress {name} -n {namespace} -p "
                    f"{_q({'spec': {'ingressClassName': usable}})}" if usable else "",
                check="kubectl get ingressclass", code="no-owner")
        else:
            c, _settings, why = owner
            add(INFO, "spec.ingressClassName", f"owned by controller {c.pod} ({why})", code="owner")
            if not c.ready:
                add(ERROR, "spec.ingressClassName", f"the controller pod {c.pod} that owns it is not Ready",
                    check=f"kubectl describe pod -n {c.pod.replace('/', ' ')}", code="controller-not-ready")
    services = {object_key(s): s for s in cluster.services}
    slices: dict[str, list[dict]] = {}
    for es in cluster.slices:
        svc = _labels(es).get(LABEL_SERVICE_NAME)
        if svc and es.get("addressType", "IPv4") == "IPv4":
            slices.setdefault(f"{_ns(es)}/{svc}", []).append(es)

    def backend(fld: str, where: str, b: dict) -> None:
        up = routes.resolve_upstream(namespace, b, services, slices)
        svc_name = (b.get("service") or {}).get("name", "")
        if up.problem:
            add(ERROR, fld, f"{where}: {up.problem}; requests get 503", check=(
                f"pocketkube explain svc/{svc_name} -n {namespace}" if svc_name else ""), code="backend")
        else:
            add(INFO, fld, f"{where} -> Service {svc_name} port {up.port} -> "
                + _names_list([f"{a}:{p}" for a, p in up.endpoints], 4), code="backend-ok")

    if spec.get("defaultBackend"):
        backend("spec.defaultBackend", "the default backend", spec["defaultBackend"])
    for r, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host") or "*"
        for p, path in enumerate((rule.get("http") or {}).get("paths") or []):
            where = f"{host}{path.get('path', '/')} ({path.get('pathType', 'ImplementationSpecific')})"
            backend(f"spec.rules[{r}].http.paths[{p}].backend", where, path.get("backend") or {})
    secrets = {object_key(x): x for x in cluster.secrets}
    rule_hosts = [r.get("host") for r in spec.get("rules") or [] if r.get("host")]
    for t, tls in enumerate(spec.get("tls") or []):
        ref = f"{namespace}/{tls.get('secretName', '')}"
        hosts = tls.get("hosts") or rule_hosts
        if not tls.get("secretName"):
            add(INFO, f"spec.tls[{t}]", f"no secretName: {', '.join(hosts)} get(s) the controller's default "
                "(self-signed) certificate", code="tls-default")
            continue
        for host in hosts or [""]:
            checked = routes.check_certificate(secrets.get(ref), ref, host or "*")
            if checked.problem:
                add(ERROR, f"spec.tls[{t}].secretName", f"{host or 'TLS'}: {checked.problem}, which clients do not "
                    "trust", check=f"kubectl describe secret {tls['secretName']} -n {namespace}",
                    fix=(f"kubectl create secret tls {tls['secretName']} -n {namespace} --cert=FILE.crt "
                         "--key=FILE.key") if secrets.get(ref) is None else "", code="tls-secret")
            else:
                add(INFO, f"spec.tls[{t}].secretName", f"{host}: served with the certificate of secret {ref}",
                    code="tls-ok")
    if owner is not None:
        same_owner = [i for i in cluster.ingresses
                      if routes.class_decision(i, classes, owner[1])[0]]
        model = routes.build(same_owner, cluster.ingress_classes, cluster.services, cluster.slices, cluster.secrets,
                             owner[1])
        for problem in model.problems:
            if problem.ingress == object_key(ing) and problem.reason in ("Conflict", "Path", "AnnotationParsing", "Canary"):
                add(WARNING, "spec.rules", problem.message, code=problem.reason.lower())
    addresses = [a.get("ip") or a.get("hostname") for a in
                 ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
    if addresses:
        add(INFO, "status.loadBalancer.ingress", f"address {', '.join(addresses)}", code="address")
    hosts = ", ".join(sorted(set(rule_hosts))) or "any host"
    return Report(target, f"{target} is healthy: {hosts}, every backend has ready endpoints.", notes.findings)


# ---- entry point and rendering --------------------------------------------------------------------

def parse_target(text: str) -> tuple[str, str]:
    """("Service", "web") from "svc/web"; ValueError with a message for anything else."""
    kind, sep, name = text.partition("/")
    if not sep or not name or kind.lower() not in KINDS:
        raise ValueError(f"expected svc/NAME, ingress/NAME, pod/NAME or endpoints/NAME, not {text!r}")
    return KINDS[kind.lower()], name


def explain(kind: str, namespace: str, name: str, cluster: Cluster) -> Report:
    return {"Service": explain_service, "Ingress": explain_ingress, "Pod": explain_pod,
            "Endpoints": explain_endpoints}[kind](cluster, namespace, name)


def render_text(report: Report, width: int = WIDTH) -> str:
    """A healthy report's one line, or the errors, then the warnings, each with its fix, then
    what the object does (the notes), wrapped at `width` columns (commands are never cut)."""
    if report.healthy:
        return report.summary + "\n"
    lines = [report.headline]

    def block(f: Finding, head: str, indent: int) -> None:
        lines.extend(textwrap.wrap(f"{f.field}: {f.message}", width, initial_indent=head,
                                   subsequent_indent=" " * indent, break_on_hyphens=False, break_long_words=False))
        for label, cmd in (("fix", f.fix), ("see", f.check)):
            if cmd:
                lines.append(f"{'':{indent}}{label}: {cmd}")

    for f in sorted(report.problems, key=lambda f: f.level != ERROR):
        block(f, f"{f.level:<8}", 8)
    notes = [f for f in report.findings if f.level == INFO]
    if notes:
        lines.append("what it does:")
        for f in notes:
            block(f, "  - ", 4)
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps({"target": report.target, "healthy": report.healthy, "summary": report.headline,
                       "findings": [asdict(f) for f in report.findings]}, indent=2) + "\n"
