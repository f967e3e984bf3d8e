"""A packet tracer over the proxy's rules: follows the first packet of a connection through
the base chains of a `Ruleset` (ruleset.py) in netfilter's order, as the kernel would, and
says where it ends: which chains and rules it met, the endpoints it may be DNATed to (with
their odds), whether it is masqueraded, and the verdict.

It reads the same rule objects nftables.py renders for nft, never the kernel, so the unit
tests check the generated rules through it and `pocketkube trace` answers "why does my
Service not answer?" from the cluster state alone.

The first packet of a connection is always `ct state new`; a random choice forks the trace
(one outcome per branch, with its probability); affinity sets hold what the caller says
(empty by default: no client remembered).

A node whose proxy runs in userspace mode has no rules to follow: `userspace_trace` says which
relay listener the packet meets (userspace.py's own `EndpointChooser` decides, as the relay
would), the endpoints it may go to, the round-robin or affinity choice, and that the
endpoint sees the node as the client; or why nothing answers (no listener: refused; an
address nothing serves: no route).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from fractions import Fraction

from pocketkube.core.cluster import CLUSTER_CIDR, DEFAULT_NAME, HOST_ADDRESS, SERVICE_CIDR, proxy_table
from pocketkube.proxy.ruleset import (AddressPairInSet, CtStateNew, CtStatusDnat, Dnat, FibLocal, IpInRanges,
                                      IpInSet, IpMatch,
                                      Masquerade, MarkClear, PortMatch, PortVmap, ProtocolMatch, RandomOneIn, Reject,
                                      Rule, Ruleset, ServiceVmap, SetMark, UpdateSet, Verdict, render_rule)

PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
ACCEPT, DROP, REJECT, CONTINUE = "accept", "drop", "reject", "continue"
NO_ROUTE = "no route"


@dataclass
class Step:
    chain: str
    rule: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.chain}: {self.rule}" + (f"  ({self.note})" if self.note else "")


@dataclass
class Outcome:
    """One way the packet can go."""
    verdict: str  # accept, drop, reject
    destination: str  # ip:port after any DNAT
    dnat: bool = False
    masquerade: bool = False
    delivered: str = ""  # "local" (this node) or "forward"
    probability: Fraction = Fraction(1)
    steps: list[Step] = field(default_factory=list)
    reject_with: str = ""
    relayed: bool = False  # by a userspace relay: a new connection from the node


@dataclass
class _State:
    saddr: str
    daddr: str
    protocol: str
    dport: int
    mark: int = 0
    dnat: bool = False
    masquerade: bool = False
    probability: Fraction = Fraction(1)
    steps: list = field(default_factory=list)
    reject_with: str = ""

    def fork(self) -> _State:
        return replace(self, steps=list(self.steps))


@dataclass
class Trace:
    """Every outcome of one packet, most likely first."""
    source: str
    destination: str
    protocol: str
    outcomes: list[Outcome]

    def summary(self) -> str:
        """"10.244.1.2:80, 10.244.2.3:80" (the endpoints it may reach), "REJECT", "DROP", or the
        untouched destination: the form kube-proxy's packet-flow tests use."""
        results = set()
        for o in self.outcomes:
            results.add(o.destination if o.verdict == ACCEPT else o.verdict.upper())
        return ", ".join(sorted(results, key=_sort_key))

    def masqueraded(self) -> bool | None:
        """True or False when every outcome agrees, else None."""
        values = {o.masquerade for o in self.outcomes if o.verdict == ACCEPT}
        return values.pop() if len(values) == 1 else None


def _sort_key(text: str):
    try:
        ip, _, port = text.rpartition(":")
        return (0, int(ipaddress.IPv4Address(ip)), int(port))
    except ValueError:
        return (1, 0, text)


class Tracer:
    def __init__(self, ruleset: Ruleset, local_addresses: set[str] | list[str],
                 affinity: dict[str, set[str]] | None = None):
        """`local_addresses`: the node's own addresses (what `fib ... type local` matches).
        `affinity`: affinity set name -> client addresses it holds."""
        self.ruleset = ruleset
        self.local = set(local_addresses) | {"127.0.0.1"}
        self.affinity = affinity or {}

    def trace(self, source: str, destination: str, port: int, protocol: str = "tcp",
              from_node: bool = False) -> Trace:
        """The first packet from `source` to `destination:port`. from_node: it is sent by a
        process of the node itself (output path), else it arrives from outside (a pod on the
        node's bridge, another machine)."""
        state = _State(source, destination, protocol.lower(), port)
        finished: list[Outcome] = []
        if from_node:
            for st in self._through([state], ("output", "postrouting"), finished):
                finished.append(self._outcome(st, ACCEPT, "local" if st.daddr in self.local else "forward"))
        else:
            for st in self._through([state], ("prerouting",), finished):
                local = st.daddr in self.local
                for done in self._through([st], ("input",) if local else ("forward", "postrouting"), finished):
                    finished.append(self._outcome(done, ACCEPT, "local" if local else "forward"))
        finished.sort(key=lambda o: (-o.probability, _sort_key(o.destination)))
        return Trace(source, f"{destination}:{port}", protocol.lower(), finished)

    def _through(self, states: list[_State], hooks: tuple[str, ...], finished: list[Outcome]) -> list[_State]:
        """Run the hooks in turn; dropped and rejected branches go to `finished`, the
        accepted ones are returned."""
        for hook in hooks:
            accepted = []
            for st in states:
                for sub, verdict in self._run_hook(st, hook):
                    if verdict == ACCEPT:
                        accepted.append(sub)
                    else:
                        finished.append(self._outcome(sub, verdict, ""))
            states = accepted
        return states

    def _outcome(self, st: _State, verdict: str, delivered: str) -> Outcome:
        return Outcome(verdict, f"{st.daddr}:{st.dport}", st.dnat, st.masquerade, delivered, st.probability,
                       st.steps, st.reject_with)

    def _run_hook(self, state: _State, hook: str) -> list[tuple[_State, str]]:
        """Base chains of one hook in priority order; accept passes to the next one."""
        chains = sorted((c for c in self.ruleset.base_chains() if c.hook.hook == hook),
                        key=lambda c: _priority(c.hook.priority))
        states = [(state, ACCEPT)]
        for chain in chains:
            results = []
            for st, verdict in states:
                if verdict != ACCEPT:
                    results.append((st, verdict))
                    continue
                for sub, result in self._run_chain(st, chain.name):
                    results.append((sub, ACCEPT if result == CONTINUE else result))
            states = results
        return states

    def _run_chain(self, state: _State, name: str) -> list[tuple[_State, str]]:
        """Rules of one chain; returns (state, verdict) per branch, CONTINUE when the chain
        ran out or returned."""
        results: list[tuple[_State, str]] = []
        work = [(state, 0)]
        rules = self.ruleset.chains[name].rules
        while work:
            st, index = work.pop(0)
            if index >= len(rules):
                results.append((st, CONTINUE))
                continue
            for sub, outcome in self._run_rule(st, name, rules[index]):
                if outcome is None:
                    work.append((sub, index + 1))
                elif outcome[0] == "goto":
                    results += self._run_chain(sub, outcome[1])
                elif outcome[0] == "jump":
                    for after, verdict in self._run_chain(sub, outcome[1]):
                        if verdict == CONTINUE:
                            work.append((after, index + 1))
                        else:
                            results.append((after, verdict))
                elif outcome[0] == "return":
                    results.append((sub, CONTINUE))
                else:
                    results.append((sub, outcome[0]))
        return results

    def _run_rule(self, state: _State, chain: str, rule: Rule) -> list[tuple[_State, tuple | None]]:
        """Branches of one rule: (state, None) when the rule ends without a verdict (no match,
        or only statements), else (state, (verdict, chain))."""
        branches: list[tuple[_State, tuple | None]] = []
        work = [(state, 0, [], False)]
        text = render_rule(rule)
        while work:
            st, i, notes, missed = work.pop()
            if missed:
                branches.append((st, None))
                continue
            ended = None
            while i < len(rule):
                expr = rule[i]
                i += 1
                if isinstance(expr, RandomOneIn):
                    if expr.modulus > 1:
                        miss = st.fork()
                        miss.probability *= Fraction(expr.modulus - 1, expr.modulus)
                        work.append((miss, len(rule), notes, True))  # this draw fails: no match
                    st = st.fork()
                    st.probability *= Fraction(1, expr.modulus)
                    notes = [*notes, f"1 in {expr.modulus}"]
                    continue
                if isinstance(expr, (ServiceVmap, PortVmap)):
                    key = ((st.daddr, st.protocol, st.dport) if isinstance(expr, ServiceVmap)
                           else (st.protocol, st.dport))
                    verdict = self.ruleset.sets[expr.map_name].elements.get(key)
                    if verdict is None:
                        ended = "nomatch"
                        break
                    notes = [*notes, f"@{expr.map_name} has {' . '.join(map(str, key))}"]
                    ended = (verdict.kind, verdict.chain)
                    break
                if isinstance(expr, Verdict):
                    ended = (expr.kind, expr.chain)
                    break
                matched, note = self._match(st, expr)
                if matched is None:  # a statement
                    if note:
                        notes = [*notes, note]
                    if isinstance(expr, (Dnat, Masquerade)):
                        ended = (ACCEPT, "")
                        break
                    if isinstance(expr, Reject):
                        ended = (REJECT, "")
                        break
                    continue
                if not matched:
                    ended = "nomatch"
                    break
            if ended == "nomatch":
                branches.append((st, None))
                continue
            st.steps.append(Step(chain, text, "; ".join(notes)))
            branches.append((st, ended))
        return branches

    def _match(self, st: _State, expr) -> tuple[bool | None, str]:
        """(True/False, "") for a match; (None, note) for a statement, applied to st."""
        if isinstance(expr, IpMatch):
            address = st.saddr if expr.field == "saddr" else st.daddr
            inside = ipaddress.IPv4Address(address) in ipaddress.IPv4Network(expr.value, strict=False)
            return inside != expr.negate, ""
        if isinstance(expr, IpInRanges):
            address = ipaddress.IPv4Address(st.saddr if expr.field == "saddr" else st.daddr)
            inside = any(address in ipaddress.IPv4Network(v, strict=False) for v in expr.values)
            return inside != expr.negate, ""
        if isinstance(expr, IpInSet):
            address = st.saddr if expr.field == "saddr" else st.daddr
            named = self.ruleset.sets[expr.set_name]
            if named.timeout:
                return address in self.affinity.get(expr.set_name, set()), ""
            return (address,) in named.elements, ""
        if isinstance(expr, AddressPairInSet):
            return (st.saddr, st.daddr) in self.ruleset.sets[expr.set_name].elements, ""
        if isinstance(expr, PortMatch):
            return st.protocol == expr.protocol and st.dport == expr.port, ""
        if isinstance(expr, ProtocolMatch):
            return st.protocol == expr.protocol, ""
        if isinstance(expr, FibLocal):
            return (st.saddr if expr.field == "saddr" else st.daddr) in self.local, ""
        if isinstance(expr, CtStateNew):
            return True, ""
        if isinstance(expr, CtStatusDnat):
            return st.dnat, ""
        if isinstance(expr, MarkClear):
            return not st.mark & expr.bit, ""
        if isinstance(expr, SetMark):
            st.mark = st.mark | expr.bit if expr.op == "or" else st.mark ^ expr.bit
            return None, ""
        if isinstance(expr, UpdateSet):
            return None, f"client {st.saddr} remembered in @{expr.set_name}"
        if isinstance(expr, Dnat):
            st.daddr, st.dport, st.dnat = expr.address, expr.port, True
            return None, f"DNAT to {expr.address}:{expr.port}"
        if isinstance(expr, Masquerade):
            st.masquerade = True
            return None, "source masqueraded to the outgoing interface's address"
        if isinstance(expr, Reject):
            st.reject_with = "tcp reset" if expr.tcp_reset else "icmp port-unreachable"
            return None, f"rejected with {st.reject_with}"
        raise TypeError(f"the tracer does not know {type(expr).__name__}")


def _priority(text: str) -> int:
    total = 0
    for sign, token in _terms(text):
        total += sign * (PRIORITY_NAMES[token] if token in PRIORITY_NAMES else int(token))
    return total


def _terms(text: str):
    sign = 1
    for token in text.replace("+", " + ").replace(" - ", " -- ").split():
        if token == "+":
            sign = 1
        elif token == "--":
            sign = -1
        else:
            yield sign, token
            sign = 1


def format_trace(trace: Trace) -> str:
    """Human-readable steps: the shared path, then each outcome with its odds."""
    lines = [f"{trace.protocol} {trace.source} -> {trace.destination}"]
    outcomes = trace.outcomes
    common = 0
    if outcomes:
        first = outcomes[0].steps
        while common < len(first) and all(len(o.steps) > common and _same(o.steps[common], first[common])
                                          for o in outcomes):
            common += 1
        lines += [f"  {step}" for step in first[:common]]
    if len(outcomes) > 1:
        lines.append(f"  one of {len(outcomes)} outcomes (random endpoint choice):")
    for o in outcomes:
        indent = "    " if len(outcomes) > 1 else "  "
        if len(outcomes) > 1:
            lines.append(f"  [{_percent(o.probability)}] {_describe(o)}")
        lines += [f"{indent}{step}" for step in o.steps[common:]]
        if len(outcomes) == 1:
            lines.append(f"  => {_describe(o)}")
    if not outcomes:
        lines.append("  => no outcome")
    return "\n".join(lines)


def _same(a: Step, b: Step) -> bool:
    return a.chain == b.chain and a.rule == b.rule


def _percent(p: Fraction) -> str:
    return f"{float(p) * 100:.1f}%"


def _describe(o: Outcome) -> str:
    if o.verdict == REJECT:
        return f"REJECT ({o.reject_with}): the client sees connection refused at once"
    if o.verdict == DROP:
        return "DROP: the client sees a timeout"
    if o.verdict == NO_ROUTE:
        return "NO ROUTE: nothing on this node has that address: the client sees network unreachable at once"
    if o.relayed:
        return (f"ACCEPT, relayed to {o.destination}, source rewritten to the node "
                f"(userspace relays always proxy)")
    where = "delivered to this node" if o.delivered == "local" else "forwarded"
    nat = f"DNAT to {o.destination}" if o.dnat else f"no DNAT ({o.destination})"
    return f"ACCEPT, {nat}, {'masqueraded' if o.masquerade else 'source kept'}, {where}"


# ---- `pocketkube trace`: the same rules, built from the cluster's state -----------------

@dataclass
class NodeInfo:
    name: str
    ip: str
    addresses: set[str]  # what `fib type local` matches on that node


def _nodes(node_list: list[dict]) -> dict[str, NodeInfo]:
    nodes = {}
    for node in node_list:
        name = node["metadata"]["name"]
        addresses = {a["address"] for a in (node.get("status") or {}).get("addresses") or []
                     if a.get("type") in ("InternalIP", "ExternalIP")}
        internal = [a["address"] for a in (node.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"]
        pod_cidr = (node.get("spec") or {}).get("podCIDR")
        if pod_cidr:
            addresses.add(str(ipaddress.IPv4Network(pod_cidr, strict=False).network_address + 1))
        nodes[name] = NodeInfo(name, internal[0] if internal else "", addresses)
    return nodes


def node_ruleset(node_name: str, services: list[dict], slices: list[dict], cluster_name: str,
                 cluster_cidr: str, service_cidr: str) -> Ruleset:
    """The table the proxy on `node_name` programs for these objects."""
    from pocketkube.proxy.changetracker import ChangeTracker
    from pocketkube.proxy.nftables import NftablesConfig, build_ruleset

    tracker = ChangeTracker(node_name)
    for svc in services:
        tracker.on_service(None, svc)
    for es in slices:
        tracker.on_slice(es)
    tracker.apply()
    cfg = NftablesConfig(proxy_table(cluster_name), node_name, cluster_cidr, service_cidr)
    return build_ruleset(cfg, tracker.services, tracker.endpoints)


def userspace_trace(node: NodeInfo, services: list[dict], slices: list[dict], source: str, destination: str,
                    port: int, protocol: str = "tcp", from_node: bool = False, cluster_cidr: str = CLUSTER_CIDR,
                    service_cidr: str = SERVICE_CIDR) -> Trace:
    """The first packet from `source` to `destination:port` on a node whose proxy runs in
    userspace mode (from_node: sent by a process of the node itself)."""
    from pocketkube.proxy.changetracker import ChangeTracker
    from pocketkube.proxy.userspace import DROP_ALL, INTERNAL, EndpointChooser, service_addresses, source_allowed

    tracker = ChangeTracker(node.name)
    for svc in services:
        tracker.on_service(None, svc)
    for es in slices:
        tracker.on_slice(es)
    tracker.apply()
    node_addresses = sorted(node.addresses)
    relays, choosers, local = {}, {}, set(node.addresses)
    for name in sorted(tracker.services.service_names()):
        local |= service_addresses(tracker.services, name)
        for spn in tracker.services.ports_of(name):
            choosers[spn] = EndpointChooser(tracker.services[spn], tracker.endpoints.get(spn, ()))
            for spec in choosers[spn].relays(node_addresses):
                relays.setdefault(spec.key, spec)
    proto = protocol.lower()
    spec = relays.get((destination, port, protocol.upper()))

    def done(verdict: str, steps: list[Step], **outcome) -> Trace:
        return Trace(source, f"{destination}:{port}", proto,
                     [Outcome(verdict, f"{destination}:{port}", steps=steps, **outcome)])

    if spec is None:
        where = f"{destination}:{port}/{proto}"
        if destination in local:
            reset = "tcp reset" if proto == "tcp" else "icmp port-unreachable"
            why = ("a Service address without usable endpoints, or a port it does not serve"
                   if destination not in node.addresses else "a node address: no NodePort relay for this port")
            return done(REJECT, [Step("relay", f"no relay listens on {where}", why)], reject_with=reset)
        if ipaddress.IPv4Address(destination) in ipaddress.IPv4Network(service_cidr, strict=False):
            return done(NO_ROUTE, [Step("route", f"{destination} is not on pk-svc and has no route",
                                        "no Service has this address")])
        return done(ACCEPT, [Step("route", f"no relay for {where}: routed unchanged")],
                    delivered="local" if destination in node.addresses else "forward")
    chooser = choosers[spec.service]
    internal = from_node or source in local or \
        ipaddress.IPv4Address(source) in ipaddress.IPv4Network(cluster_cidr, strict=False)
    kind = "ClusterIP" if spec.kind == INTERNAL else ("NodePort" if destination in node.addresses else
                                                      "load-balancer IP" if destination in chooser.svc.lb_ips
                                                      else "external IP")
    steps = [Step("relay", f"listener {destination}:{port}/{proto} of {spec.service} ({kind})")]
    if spec.allow and not source_allowed(source, spec.allow):
        steps.append(Step("relay", "socket filter drops the SYN" if proto == "tcp" else "the relay discards the datagram",
                          f"{source} is not in loadBalancerSourceRanges ({', '.join(spec.allow)})"))
        return done(DROP, steps)
    if spec.drop == DROP_ALL or (spec.drop and not internal):
        policy = "internalTrafficPolicy" if spec.kind == INTERNAL else "externalTrafficPolicy"
        steps.append(Step("relay", "socket filter drops the SYN" if proto == "tcp" else "the relay discards the datagram",
                          f"{policy} Local and no usable endpoint on node {node.name}"))
        return done(DROP, steps)
    candidates = chooser.candidates(spec.kind, internal)
    which = "ready" if all(ep.ready for ep in candidates) else "serving and terminating (none is ready)"
    if (spec.kind == INTERNAL and chooser.svc.internal_policy_local) or \
            (spec.kind != INTERNAL and chooser.svc.external_policy_local and not internal):
        which += f", on node {node.name} only (traffic policy Local)"
    steps.append(Step("relay", "candidates: " + ", ".join(map(str, candidates)), f"{which} endpoints"))
    choice = f"round robin over {len(candidates)}"
    if chooser.svc.affinity_seconds:
        choice = (f"ClientIP affinity: {source} returns to the endpoint it had within "
                  f"{chooser.svc.affinity_seconds}s of its last connection; else {choice}")
    steps.append(Step("relay", f"connect to the chosen endpoint ({choice})",
                      "source rewritten to the node (userspace relays always proxy)"))
    outcomes = [Outcome(ACCEPT, str(ep), dnat=True, masquerade=True,
                        delivered="local" if ep.is_local else "forward",
                        probability=Fraction(1, len(candidates)), steps=list(steps), relayed=True)
                for ep in candidates]
    return Trace(source, f"{destination}:{port}", proto, outcomes)


async def proxy_mode(client) -> str:
    """The mode the cluster's proxies run in: the kube-proxy DaemonSet's `--mode` (nftables
    when it is absent)."""
    from pocketkube.core import errors

    try:
        ds = await client.get("apps/v1", "daemonsets", "kube-proxy", "kube-system")
    except errors.APIError:
        return "nftables"
    for container in ((ds.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        for i, arg in enumerate(args):
            if arg.startswith("--mode="):
                return arg.split("=", 1)[1]
            if arg == "--mode" and i + 1 < len(args):
                return args[i + 1]
    return "nftables"


class TraceError(ValueError):
    """The source or destination cannot be resolved (the message says why)."""


async def trace_in_cluster(client, *, source: str, to: str, protocol: str = "tcp", namespace: str = "default",
                           cluster_name: str = DEFAULT_NAME, host_address: str = HOST_ADDRESS,
                           cluster_cidr: str = CLUSTER_CIDR, service_cidr: str = SERVICE_CIDR,
                           mode: str | None = None, announced: dict[str, list[str]] | None = None) -> str:
    """Trace a first packet from `source` (a pod name or namespace/name, `node/NAME` or
    `host`, whose address on the node network is `host_address`) to `to` ("ADDR:PORT")
    through the rules of the node it enters, and on to a second node when it is forwarded
    there unchanged (another node's NodePort). `mode`: the proxies' mode (None: read it from
    the cluster, `proxy_mode`). `announced`: load-balancer address -> the nodes holding it
    (the host's packet to it enters the announcing node)."""
    address, _, port_text = to.rpartition(":")
    try:
        ipaddress.IPv4Address(address)
        port = int(port_text)
    except ValueError:
        raise TraceError(f"--to must be IPv4ADDRESS:PORT, not {to!r}") from None
    nodes = _nodes((await client.list("v1", "nodes")).get("items", []))
    services = (await client.list("v1", "services")).get("items", [])
    slices = (await client.list("discovery.k8s.io/v1", "endpointslices")).get("items", [])
    src_ip, node, from_node, label = await _resolve_source(client, source, namespace, cluster_name, host_address,
                                                           nodes, address)
    from pocketkube.proxy.backend import NodeSettings, backends

    mode = mode or await proxy_mode(client)
    known = backends()
    backend = known.get(mode) or next(iter(known.values()))  # (an unknown mode: the default's rules)
    settings = NodeSettings(cluster_name=cluster_name, cluster_cidr=cluster_cidr, service_cidr=service_cidr)
    lines = []
    owner = _load_balancer_owner(services, address)
    if owner and source == "host":
        holders = [n for n in (announced or {}).get(address, []) if n in nodes]
        if not holders:
            return (f"{address} is the load-balancer address of Service {owner}, but no node announces it: "
                    f"the host's ARP request for it on the node network gets no answer (no route to host). "
                    f"A node announces it when its agent runs and, with externalTrafficPolicy Local, it has a "
                    f"ready endpoint of the Service.")
        node = nodes[holders[0]]
        lines.append(f"{address} is the load-balancer address of Service {owner}: node {node.name} announces it "
                     f"(holds it on eth0 and answers ARP on the node network, layer 2), so the host sends it there.")
    for _hop in range(2):
        trace = backend.trace(node, settings, services, slices, src_ip, address, port, protocol, from_node)
        lines.append(f"on node {node.name}{' (userspace proxy)' if mode == 'userspace' else ''}, from {label}:")
        lines.append(format_trace(trace))
        onward = [o for o in trace.outcomes if o.verdict == ACCEPT and o.delivered == "forward" and not o.dnat]
        target = next((n for n in nodes.values() if address in n.addresses and n.name != node.name), None)
        if not onward or target is None:
            break
        label, src_ip = f"{label} via node {node.name}", (node.ip if onward[0].masquerade else src_ip)
        node, from_node = target, False
    return "\n".join(lines)


def _load_balancer_owner(services: list[dict], address: str) -> str | None:
    """"namespace/name" of the LoadBalancer Service whose ingress IP is `address`."""
    for svc in services:
        for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") == address and (svc.get("spec") or {}).get("type") == "LoadBalancer":
                return f"{svc['metadata'].get('namespace', '')}/{svc['metadata']['name']}"
    return None


async def _resolve_source(client, source: str, namespace: str, cluster_name: str, host_address: str,
                          nodes: dict[str, NodeInfo], destination: str) -> tuple[str, NodeInfo, bool, str]:
    """(source address, node whose rules it meets first, whether it leaves by that node's
    output path, a label)."""
    from pocketkube.core import errors

    if not nodes:
        raise TraceError("the cluster has no nodes")
    if source == "host":
        target = next((n for n in nodes.values() if destination in n.addresses), None)
        # the host routes the service range (and external IPs) through node 1
        first = nodes.get(f"{cluster_name}-node-1") or nodes[sorted(nodes)[0]]
        return host_address, target or first, False, "the host"
    if source.startswith("node/"):
        name = source.split("/", 1)[1]
        if name not in nodes:
            raise TraceError(f'node "{name}" not found')
        return nodes[name].ip, nodes[name], True, f"node {name}"
    ns, name = source.split("/", 1) if "/" in source else (namespace, source)
    try:
        pod = await client.get("v1", "pods", name, ns)
    except errors.APIError as exc:
        raise TraceError(exc.message) from None
    node_name = (pod.get("spec") or {}).get("nodeName")
    pod_ip = (pod.get("status") or {}).get("podIP")
    if not node_name or node_name not in nodes or not pod_ip:
        raise TraceError(f'pod "{name}" is not running on a node yet (no node or no IP)')
    host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
    return pod_ip, nodes[node_name], host_network, f"pod {ns}/{name} ({pod_ip})"
