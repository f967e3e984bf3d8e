"""The nftables backend: Services as one nftables table per node (README.md beside this file
teaches the rules).

Three layers:
- `base_ruleset` and `service_rules` turn the change tracker's maps into the rules of
  ruleset.py (pure; `build_ruleset` assembles the whole table for tests and the tracer);
- `NftablesBackend.sync` turns a change into one `nft -f -` transaction: everything on a full
  sync, only the chains, set elements and affinity sets of the changed Services on a partial
  one. Its record of what the kernel holds changes only after nft succeeded, so a refused
  transaction leaves the last good rules in place and the next sync is a full one;
- `NftRunner` runs nft and conntrack inside the node's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pocketkube.core.cluster import CLUSTER_CIDR, DEFAULT_NAME, SERVICE_CIDR, proxy_table
from pocketkube.core.netns import enter_netns
from pocketkube.proxy.backend import Backend, BackendError, Commands, NodeSettings, SyncStats, netns_path
from pocketkube.proxy.changetracker import PortMap, UpdateResult
from pocketkube.proxy.ruleset import (DROP, MASQUERADE_BIT, RETURN, AddressPairInSet, Chain, CtStateNew,
                                      CtStatusDnat, Dnat, FibLocal, Hook, IpInRanges, IpInSet, IpMatch, Masquerade, MarkClear,
                                      NamedSet, PortVmap, ProtocolMatch, RandomOneIn, Reject, Rule, Ruleset,
                                      ServiceVmap, SetMark, UpdateSet, Verdict, goto, jump, render_element,
                                      render_rule)
from pocketkube.proxy.servicemap import Endpoint, ServicePort, categorize_endpoints, chain_base

log = logging.getLogger(__name__)

FAMILY = "ip"
# maps and sets
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
CLUSTER_IPS = "cluster-ips"
FIREWALL_IPS = "firewall-ips"
HAIRPIN = "hairpin-endpoints"
# chains
SERVICES = "services"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"
REJECT_CHAIN = "reject-chain"
SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"
CLUSTER_IPS_CHECK = "cluster-ips-check"
FIREWALL_CHECK = "firewall-check"
SERVICE_CHAIN_PREFIXES = ("service-", "local-", "external-", "firewall-")
AFFINITY_PREFIX = "affinity-"
LOOPBACK = "127.0.0.0/8"


@dataclass(frozen=True)
class NftablesConfig:
    table: str = proxy_table(DEFAULT_NAME)
    node_name: str = ""
    cluster_cidr: str = CLUSTER_CIDR  # pod traffic: not masqueraded on its way to a ClusterIP
    service_cidr: str = SERVICE_CIDR  # unallocated ClusterIPs are dropped


# ---- the rules --------------------------------------------------------------------------

def base_ruleset(cfg: NftablesConfig) -> Ruleset:
    """The table without any Service: hooks, dispatch maps, masquerading, reject."""
    rs = Ruleset(FAMILY, cfg.table)
    rs.add_set(NamedSet(SERVICE_IPS, "ipv4_addr . inet_proto . inet_service", is_map=True))
    rs.add_set(NamedSet(SERVICE_NODEPORTS, "inet_proto . inet_service", is_map=True))
    rs.add_set(NamedSet(NO_ENDPOINT_SERVICES, "ipv4_addr . inet_proto . inet_service", is_map=True))
    rs.add_set(NamedSet(NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service", is_map=True))
    rs.add_set(NamedSet(FIREWALL_IPS, "ipv4_addr . inet_proto . inet_service", is_map=True))
    rs.add_set(NamedSet(CLUSTER_IPS, "ipv4_addr"))
    rs.add_set(NamedSet(HAIRPIN, "ipv4_addr . ipv4_addr"))
    new = CtStateNew()
    local_daddr = (FibLocal("daddr"), IpMatch("daddr", LOOPBACK, negate=True))
    chains = [
        # filter, before DNAT: load-balancer addresses only for their loadBalancerSourceRanges
        Chain("filter-prerouting", [(new, jump(FIREWALL_CHECK))], Hook("filter", "prerouting", "-110")),
        # filter: refuse or drop what no endpoint serves, before routing could send it on
        Chain("filter-input", [(new, jump(NODEPORT_ENDPOINTS_CHECK)), (new, jump(SERVICE_ENDPOINTS_CHECK))],
              Hook("filter", "input", "-110")),
        Chain("filter-forward", [(new, jump(SERVICE_ENDPOINTS_CHECK)), (new, jump(CLUSTER_IPS_CHECK))],
              Hook("filter", "forward", "-110")),
        Chain("filter-output", [(new, jump(FIREWALL_CHECK)), (new, jump(SERVICE_ENDPOINTS_CHECK))],
              Hook("filter", "output", "-110")),
        Chain("filter-output-post-dnat", [(new, jump(CLUSTER_IPS_CHECK))], Hook("filter", "output", "-90")),
        # nat: dispatch every Service address, masquerade where marked
        Chain("nat-prerouting", [(jump(SERVICES),)], Hook("nat", "prerouting", "dstnat")),
        Chain("nat-output", [(jump(SERVICES),)], Hook("nat", "output", "-100")),
        Chain("nat-postrouting", [(jump(MASQUERADING),)], Hook("nat", "postrouting", "srcnat")),
        # a client outside the pod network (a node, the host) may get its answer from another
        # node: masquerade so the reply comes back through here. (One rule for every
        # ClusterIP: a marked packet that is not DNATed is refused or dropped, never masqueraded.)
        Chain(SERVICES, [(IpMatch("saddr", cfg.cluster_cidr, negate=True), IpInSet("daddr", CLUSTER_IPS),
                          jump(MARK_MASQ)),
                         (ServiceVmap(SERVICE_IPS),), (*local_daddr, PortVmap(SERVICE_NODEPORTS))]),
        Chain(SERVICE_ENDPOINTS_CHECK, [(ServiceVmap(NO_ENDPOINT_SERVICES),)]),
        Chain(FIREWALL_CHECK, [(ServiceVmap(FIREWALL_IPS),)]),
        Chain(NODEPORT_ENDPOINTS_CHECK, [(*local_daddr, PortVmap(NO_ENDPOINT_NODEPORTS))]),
        # a ClusterIP's unserved port is refused like a closed port (a TCP reset: the kernel
        # rate-limits ICMP errors per client, so an ICMP reject would often be a timeout)
        Chain(CLUSTER_IPS_CHECK, [(IpInSet("daddr", CLUSTER_IPS), goto(REJECT_CHAIN)),
                                  (IpMatch("daddr", cfg.service_cidr), DROP)]),
        Chain(MARK_MASQ, [(SetMark("or", MASQUERADE_BIT),)]),
        Chain(MASQUERADING, [(CtStatusDnat(), AddressPairInSet(HAIRPIN), jump(MARK_MASQ)),
                             (MarkClear(MASQUERADE_BIT), RETURN),
                             (SetMark("xor", MASQUERADE_BIT),),
                             (Masquerade(),)]),
        Chain(REJECT_CHAIN, [(ProtocolMatch("tcp"), Reject(tcp_reset=True)), (Reject(),)]),
    ]
    for chain in chains:
        rs.add_chain(chain)
    return rs


@dataclass
class ServiceRules:
    """Everything one Service contributes: its own chains and affinity sets, and its elements
    in the shared maps and sets. `inputs` are the service ports and endpoints it was made
    from: a full sync reuses the rules (and their text) of a Service whose inputs are the
    same objects, since the change tracker makes new ones for every change."""
    chains: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    elements: dict[str, dict[tuple, Verdict | None]] = field(default_factory=dict)
    affinity_sets: dict[str, int] = field(default_factory=dict)  # name -> timeout seconds
    inputs: tuple = ()
    _chain_text: list[str] | None = None
    _element_text: dict[tuple[str, tuple], str] | None = None

    def chain_block(self) -> list[str]:
        """Its chains as lines of a `table ... { }` block (rendered once): `chain NAME {`, one
        rule a line, `}`. In a block nft makes every chain before any rule, and the table and
        chain names are not written (and parsed) again on every rule line."""
        if self._chain_text is None:
            lines = []
            for name, rules in self.chains.items():
                lines.append(f"chain {name} {{")
                lines += [render_rule(rule) for rule in rules]
                lines.append("}")
            self._chain_text = lines
        return self._chain_text

    def element_text(self, set_name: str, key: tuple) -> str:
        """One of its elements as nft writes it (rendered once)."""
        if self._element_text is None:
            self._element_text = {(s, k): render_element(k, v) for s, elements in self.elements.items()
                                  for k, v in elements.items()}
        return self._element_text[(set_name, key)]

    def element(self, set_name: str, key: tuple, value: Verdict | None = None) -> None:
        self.elements.setdefault(set_name, {})[key] = value

    def merge(self, other: ServiceRules) -> None:
        self.chains.update(other.chains)
        self.affinity_sets.update(other.affinity_sets)
        for set_name, elements in other.elements.items():
            self.elements.setdefault(set_name, {}).update(elements)


def affinity_set_name(svc: ServicePort, ep: Endpoint) -> str:
    """One set per endpoint of a ClientIP-affinity service port; the timeout is part of the
    name, so a new timeout is a new set."""
    return f"{AFFINITY_PREFIX}{chain_base(svc)}__{ep.ip}/{ep.port}/{svc.affinity_seconds}s"


_protocol_match = functools.lru_cache(maxsize=None)(ProtocolMatch)
_one_in = functools.lru_cache(maxsize=1024)(RandomOneIn)


def _dispatch(svc: ServicePort, endpoints: list[Endpoint], out: ServiceRules) -> list[Rule]:
    """Affinity first (a client seen before goes where it went), then a uniform random pick:
    rule i matches one packet in N-i, so each of the N endpoints gets 1/N."""
    l4 = _protocol_match(svc.protocol.lower())
    rules: list[Rule] = []
    count = len(endpoints)
    if svc.affinity_seconds:
        sets = [affinity_set_name(svc, ep) for ep in endpoints]
        for ep, name in zip(endpoints, sets):
            out.affinity_sets[name] = svc.affinity_seconds
            rules.append((IpInSet("saddr", name), UpdateSet(name), l4, Dnat(ep.ip, ep.port)))
        for i, (ep, name) in enumerate(zip(endpoints, sets)):
            pick = (_one_in(count - i),) if count - i > 1 else ()
            rules.append((*pick, UpdateSet(name), l4, Dnat(ep.ip, ep.port)))
        return rules
    for i, ep in enumerate(endpoints):
        if count - i > 1:
            rules.append((_one_in(count - i), l4, Dnat(ep.ip, ep.port)))
        else:
            rules.append((l4, Dnat(ep.ip, ep.port)))
    return rules


def service_port_rules(cfg: NftablesConfig, svc: ServicePort, endpoints: tuple[Endpoint, ...]) -> ServiceRules:
    """The rules of one service port (kube-proxy's per-service-port logic, chains folded)."""
    out = ServiceRules()
    cat = categorize_endpoints(endpoints, svc)
    base, proto = chain_base(svc), svc.protocol.lower()
    cluster_chain, local_chain, external_chain = f"service-{base}", f"local-{base}", f"external-{base}"
    firewall_chain = f"firewall-{base}"
    uses_cluster = bool(cat.cluster) and svc.uses_cluster_endpoints
    uses_local = bool(cat.local) and svc.uses_local_endpoints
    internal_chain = local_chain if svc.internal_policy_local else cluster_chain
    has_internal = cat.has_any and (bool(cat.local) or not svc.internal_policy_local)
    external_policy_chain = local_chain if svc.external_policy_local else cluster_chain
    has_external = cat.has_any and (bool(cat.local) or not svc.external_policy_local)
    # nothing anywhere: refuse at once; endpoints elsewhere but none here for Local: drop
    no_endpoints = goto(REJECT_CHAIN) if not cat.has_any else DROP

    out.element(CLUSTER_IPS, (svc.cluster_ip,))
    if has_internal:
        out.element(SERVICE_IPS, (svc.cluster_ip, proto, svc.port), goto(internal_chain))
    else:
        out.element(NO_ENDPOINT_SERVICES, (svc.cluster_ip, proto, svc.port), no_endpoints)
    for ip in svc.external_ips:
        if cat.has_any:
            out.element(SERVICE_IPS, (ip, proto, svc.port), goto(external_chain))
        if not has_external:
            out.element(NO_ENDPOINT_SERVICES, (ip, proto, svc.port), no_endpoints)
    if svc.lb_ips and svc.source_ranges:
        # loadBalancerSourceRanges: every other client of a load-balancer address is dropped
        # (not the NodePort, nor the ClusterIP, as in kube-proxy)
        out.chains[firewall_chain] = ((IpInRanges("saddr", svc.source_ranges, negate=True), DROP),)
        for ip in svc.lb_ips:
            out.element(FIREWALL_IPS, (ip, proto, svc.port), goto(firewall_chain))
    if svc.node_port:
        if cat.has_any:
            out.element(SERVICE_NODEPORTS, (proto, svc.node_port), goto(external_chain))
        if not has_external:
            out.element(NO_ENDPOINT_NODEPORTS, (proto, svc.node_port), no_endpoints)

    if uses_cluster:
        out.chains[cluster_chain] = tuple(_dispatch(svc, cat.cluster, out))
    if uses_local:
        out.chains[local_chain] = tuple(_dispatch(svc, cat.local, out))
    if cat.has_any and svc.externally_accessible:
        out.chains[external_chain] = tuple(_external_rules(cfg, svc, uses_cluster, uses_local, has_external,
                                                           cluster_chain, local_chain, external_policy_chain))
    for ep in cat.reachable:
        if ep.is_local:
            out.element(HAIRPIN, (ep.ip, ep.ip))
    return out


def _external_rules(cfg: NftablesConfig, svc: ServicePort, uses_cluster: bool, uses_local: bool, has_external: bool,
                    cluster_chain: str, local_chain: str, policy_chain: str) -> list[Rule]:
    if not svc.external_policy_local:
        rules: list[Rule] = [(jump(MARK_MASQ),)]  # the endpoint may be on another node
    else:
        # Local keeps the client's address; pods and the node itself are not "external"
        # clients: they use every endpoint, and the node's own traffic is masqueraded
        inside = cluster_chain if uses_cluster else (local_chain if uses_local else "")
        rules = []
        if inside:
            rules.append((IpMatch("saddr", cfg.cluster_cidr), goto(inside)))
        rules.append((FibLocal("saddr"), jump(MARK_MASQ)))
        if inside:
            rules.append((FibLocal("saddr"), goto(inside)))
    if has_external:
        rules.append((goto(policy_chain),))
    return rules


def service_inputs(service: str, services: PortMap, endpoints: PortMap) -> tuple:
    """What Service "namespace/name"'s rules are made from: its ports and their endpoints."""
    return tuple((services[spn], endpoints.get(spn, ())) for spn in services.ports_of(service))


def service_rules(cfg: NftablesConfig, service: str, services: PortMap, endpoints: PortMap,
                  previous: ServiceRules | None = None) -> ServiceRules:
    """All ports of Service "namespace/name" (`previous` itself when made from the same inputs)."""
    inputs = service_inputs(service, services, endpoints)
    if previous is not None and len(previous.inputs) == len(inputs) and all(
            a is c and b is d for (a, b), (c, d) in zip(previous.inputs, inputs)):
        return previous
    if len(inputs) == 1:
        out = service_port_rules(cfg, *inputs[0])
    else:
        out = ServiceRules()
        for svc, eps in inputs:
            out.merge(service_port_rules(cfg, svc, eps))
    out.inputs = inputs
    return out


class ElementTable:
    """The shared maps' and sets' contents. Two Services can claim one key (the same
    externalIP and port); the Service whose name sorts first wins, as long as it claims it."""

    def __init__(self) -> None:
        self._claims: dict[tuple[str, tuple], dict[str, Verdict | None]] = {}

    @classmethod
    def build(cls, parts: dict[str, ServiceRules]) -> ElementTable:
        """The table for every Service's rules at once (a full sync)."""
        table = cls()
        claims = table._claims
        for owner, part in parts.items():
            for set_name, elements in part.elements.items():
                for key, value in elements.items():
                    claims.setdefault((set_name, key), {})[owner] = value
        for (set_name, key), owners in claims.items():
            if len(owners) > 1:
                table._warn_conflict(set_name, key, owners)
        return table

    def winners(self):
        """(set, key, owner) of every element, the owner whose value the kernel holds."""
        for (set_name, key), owners in self._claims.items():
            yield set_name, key, (min(owners) if len(owners) > 1 else next(iter(owners)))

    def effective(self) -> dict[str, dict[tuple, Verdict | None]]:
        result: dict[str, dict[tuple, Verdict | None]] = {}
        for (set_name, key), owners in self._claims.items():
            result.setdefault(set_name, {})[key] = owners[min(owners)]
        return result

    def replace(self, owner: str, old: dict[str, dict], new: dict[str, dict]) -> list[tuple]:
        """Swap one owner's claims; returns (set, key, before, after) for every key whose
        effective value changed (before/after: MISSING when absent)."""
        keys = {(s, k) for s, elements in old.items() for k in elements} | \
               {(s, k) for s, elements in new.items() for k in elements}
        changes = []
        for set_name, key in keys:
            owners = self._claims.get((set_name, key), {})
            before = owners[min(owners)] if owners else MISSING
            owners.pop(owner, None)
            if key in new.get(set_name, {}):
                owners[owner] = new[set_name][key]
                if len(owners) > 1:
                    self._warn_conflict(set_name, key, owners)
            if owners:
                self._claims[(set_name, key)] = owners
            else:
                self._claims.pop((set_name, key), None)
            after = owners[min(owners)] if owners else MISSING
            if before != after:
                changes.append((set_name, key, before, after))
        return changes


    @staticmethod
    def _warn_conflict(set_name: str, key: tuple, owners: dict) -> None:
        if len(set(owners.values())) > 1:
            log.warning("%s %s is claimed by %s; %s wins", set_name, " . ".join(map(str, key)),
                        ", ".join(sorted(owners)), min(owners))


MISSING = object()


def build_ruleset(cfg: NftablesConfig, services: PortMap, endpoints: PortMap) -> Ruleset:
    """The complete table for these Services (what a full sync programs)."""
    rs = base_ruleset(cfg)
    parts = {name: service_rules(cfg, name, services, endpoints) for name in sorted(services.service_names())}
    for rules in parts.values():
        for name, chain_rules in rules.chains.items():
            rs.add_chain(Chain(name, list(chain_rules)))
        for name, timeout in rules.affinity_sets.items():
            rs.add_set(NamedSet(name, "ipv4_addr", timeout=timeout))
    for set_name, contents in ElementTable.build(parts).effective().items():
        rs.sets[set_name].elements.update(contents)
    return rs


# ---- programming the kernel -------------------------------------------------------------

class NftError(BackendError):
    """nft refused a transaction (the message is nft's own)."""


# libnftables' output flags (nftables/libnftables.h)
NFT_CTX_OUTPUT_JSON = 1 << 4
NFT_CTX_OUTPUT_TERSE = 1 << 11


class _Libnftables:
    """One libnftables context: what `nft -f` does, without a process per transaction.
    Used from one thread only (the runner's), which made it inside the node's namespace."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        except OSError as exc:
            raise NftError(f"libnftables is missing (Debian package libnftables1, installed with nftables): {exc}")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise NftError("libnftables could not make a context")
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, commands: str, flags: int = 0) -> tuple[int, str, str]:
        """(0 or an error code, output, error text), as `nft [-j -t] -f -` would give."""
        self.lib.nft_ctx_output_set_flags(self.ctx, flags)
        code = self.lib.nft_run_cmd_from_buffer(self.ctx, commands.encode())
        out = self.lib.nft_ctx_get_output_buffer(self.ctx) or b""
        err = self.lib.nft_ctx_get_error_buffer(self.ctx) or b""
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def free(self) -> None:
        self.lib.nft_ctx_free(self.ctx)


class NftRunner(Commands):
    """nft transactions through libnftables in this process, on one thread of the runner's
    own that lives inside the node's network namespace (None: the current one), plus the
    shared `ip` and `conntrack` commands. Saves a fork and exec of nsenter and nft per sync,
    and the event loop keeps running while the library works (ctypes releases the GIL)."""

    def __init__(self, netns: str | None = None):
        """netns: a name under /run/netns or a path (/proc/PID/ns/net)."""
        super().__init__(netns)
        self._path = netns_path(netns)
        self._thread: ThreadPoolExecutor | None = None
        self._context: list[_Libnftables] = []  # made by the thread on its first transaction

    @staticmethod
    def _run_here(context: list[_Libnftables], commands: str, flags: int) -> tuple[int, str, str]:
        if not context:
            context.append(_Libnftables())
        return context[0].run(commands, flags)

    async def nft(self, commands: str, flags: int = 0) -> tuple[int, str, str]:
        """Run nft commands in the node's namespace: (0 or an error code, output, errors)."""
        if self._thread is None:
            self._thread = (ThreadPoolExecutor(1, "pk-nft", enter_netns, (self._path,)) if self._path
                            else ThreadPoolExecutor(1, "pk-nft"))
            self._context = []
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_here, self._context,
                                                                commands, flags)

    async def apply(self, script: str) -> None:
        """One atomic transaction (`nft -f -`)."""
        code, _, err = await self.nft(script)
        if code != 0:
            raise NftError(err.strip() or f"nft failed with status {code}")

    async def list_names(self, table: str) -> tuple[set[str], set[str]] | None:
        """(chain names, set and map names) of our table, or None when it does not exist."""
        code, out, err = await self.nft(f"list table {FAMILY} {table}", NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_TERSE)
        if code != 0:
            if "No such file or directory" in err:
                return None
            raise NftError(err.strip())
        chains, sets = set(), set()
        for item in json.loads(out).get("nftables", []):
            if "chain" in item:
                chains.add(item["chain"]["name"])
            for kind in ("set", "map"):
                if kind in item:
                    sets.add(item[kind]["name"])
        return chains, sets

    def close(self) -> None:
        """Free the context and end the thread once a transaction in flight is done (without
        waiting for it here); the next transaction makes them again."""
        thread, context, self._thread, self._context = self._thread, self._context, None, []
        if thread is not None:
            thread.submit(lambda: context and context.pop().free())
            thread.shutdown(wait=False)


class Transaction:
    """nft commands in the order the kernel needs them within one transaction: references
    go (element deletes, chain flushes) before the objects they point at are deleted, and
    objects exist before rules and elements point at them."""

    def __init__(self, table: str):
        self.prefix = f"{FAMILY} {table}"
        self.unlink: list[str] = []
        self.delete: list[str] = []
        self.create: list[str] = []
        self.rules: list[str] = []
        self.block: list[str] = []  # lines inside `table ... { }`, after the rules (chain_block)
        self.add_elements: dict[str, list[str]] = {}

    def flush_chain(self, name: str) -> None:
        self.unlink.append(f"flush chain {self.prefix} {name}")

    def delete_element(self, set_name: str, key: tuple) -> None:
        self.unlink.append(f"delete element {self.prefix} {set_name} {{ {render_element(key, None)} }}")

    def delete_chain(self, name: str) -> None:
        self.delete.append(f"delete chain {self.prefix} {name}")

    def delete_set(self, name: str) -> None:
        self.delete.append(f"delete set {self.prefix} {name}")

    def add_chain(self, chain: Chain) -> None:
        hook = f" {{ {chain.hook.nft()} }}" if chain.hook else ""
        self.create.append(f"add chain {self.prefix} {chain.name}{hook}")

    def add_set(self, named: NamedSet) -> None:
        self.create.append(f"add {'map' if named.is_map else 'set'} {self.prefix} {named.name} {named.declaration()}")

    def add_rules(self, chain: str, rules) -> None:
        self.rules += [f"add rule {self.prefix} {chain} {render_rule(rule)}" for rule in rules]

    def add_element(self, set_name: str, key: tuple, value: Verdict | None) -> None:
        self.add_elements.setdefault(set_name, []).append(render_element(key, value))

    def empty(self) -> bool:
        return not (self.unlink or self.delete or self.create or self.rules or self.block or self.add_elements)

    def script(self, head: list[str] = ()) -> str:
        lines = [*head, *self.unlink, *self.delete, *self.create, *self.rules]
        if self.block:
            lines += [f"table {self.prefix} {{", *self.block, "}"]
        lines += [f"add element {self.prefix} {s} {{ {', '.join(e)} }}" for s, e in self.add_elements.items()]
        return "\n".join(lines) + "\n"


class NftablesBackend(Backend):
    """Keeps one node's table equal to the change tracker's maps."""

    mode = "nftables"

    def __init__(self, cfg: NftablesConfig, runner: NftRunner, service_route_device: str | None = None):
        self.cfg = cfg
        self.runner = runner
        self.service_route_device = service_route_device
        self._parts: dict[str, ServiceRules] = {}  # as programmed, per Service
        self._elements = ElementTable()
        self.needs_full_sync = True
        self._trust_record = False  # whether the kernel holds exactly what _parts says

    @classmethod
    def create(cls, node: NodeSettings) -> NftablesBackend:
        cfg = NftablesConfig(table=proxy_table(node.cluster_name), node_name=node.node_name,
                             cluster_cidr=node.cluster_cidr, service_cidr=node.service_cidr)
        return cls(cfg, NftRunner(node.netns), node.service_route_device)

    async def start(self, node_ip) -> None:
        """The route for the service range (the node has no default route, and a node process
        can only connect to a ClusterIP that has one), from the node's address."""
        if self.service_route_device:
            await self.runner.ensure_route(self.cfg.service_cidr, self.service_route_device, await node_ip())

    async def stop(self) -> None:
        """The table stays (established and new connections keep working while a proxy
        restarts); only the library context goes."""
        self.runner.close()

    @classmethod
    async def remove_leftovers(cls, node: NodeSettings, commands: Commands) -> None:
        """The table, and the service range's route (unallocated ClusterIPs: unreachable at
        once, not ARPed for)."""
        table = proxy_table(node.cluster_name)
        code, _, err = await commands.run(["nft", "delete", "table", FAMILY, table])
        if code == 0:
            log.info("removed the nftables mode's table %s", table)
        elif "No such file or directory" not in err:
            log.warning("cannot remove the nftables mode's table %s: %s", table, err.strip())
        if node.service_route_device:
            await commands.delete_route(node.service_cidr, node.service_route_device)

    @staticmethod
    def trace(node, settings: NodeSettings, services: list[dict], slices: list[dict], source: str,
              destination: str, port: int, protocol: str, from_node: bool):
        """Follow the packet through the table this node's proxy programs (trace.py)."""
        from pocketkube.proxy.trace import Tracer, node_ruleset

        ruleset = node_ruleset(node.name, services, slices, settings.cluster_name, settings.cluster_cidr,
                               settings.service_cidr)
        return Tracer(ruleset, node.addresses).trace(source, destination, port, protocol, from_node=from_node)

    async def sync(self, services: PortMap, endpoints: PortMap, result: UpdateResult) -> SyncStats:
        """Program the changes; raises NftError (and asks for a full sync next time) when nft
        refuses them. Conntrack cleanup for UDP follows a successful sync."""
        try:
            if self.needs_full_sync:
                stats = await self._full_sync(services, endpoints)
            else:
                stats = await self._partial_sync(services, endpoints, result.updated_services)
        except BaseException:
            self.needs_full_sync = True
            self._trust_record = False
            raise
        await self._clean_conntrack(result)
        return stats

    async def _full_sync(self, services, endpoints) -> SyncStats:
        if self._trust_record:
            kernel_chains = set(base_ruleset(self.cfg).chains) | {c for p in self._parts.values() for c in p.chains}
            kernel_sets = set(base_ruleset(self.cfg).sets) | {s for p in self._parts.values() for s in p.affinity_sets}
        else:  # first sync (adopting a table a previous proxy left), or after a failure
            kernel_chains, kernel_sets = await self.runner.list_names(self.cfg.table) or (set(), set())
        with _gc_paused():  # millions of small objects: the collector's passes cost more than the work
            script, parts, elements = self._full_script(services, endpoints, kernel_chains, kernel_sets)
        await self.runner.apply(script)
        self._parts, self._elements, self.needs_full_sync = parts, elements, False
        self._trust_record = True
        return SyncStats(True, len(parts), script.count("\n"))

    def _full_script(self, services: PortMap, endpoints: PortMap, kernel_chains: set[str],
                     kernel_sets: set[str]) -> tuple[str, dict[str, ServiceRules], ElementTable]:
        base = base_ruleset(self.cfg)
        if self._trust_record:  # the record is right: reuse what did not change
            previous = self._parts
            parts = {name: service_rules(self.cfg, name, services, endpoints, previous.get(name))
                     for name in services.service_names()}
            elements = self._elements  # changed in place: after a failure the full sync rebuilds it
            for name in previous.keys() | parts.keys():
                old, new = previous.get(name), parts.get(name)
                if old is not new:
                    elements.replace(name, old.elements if old else {}, new.elements if new else {})
        else:
            parts = {name: service_rules(self.cfg, name, services, endpoints) for name in services.service_names()}
            elements = ElementTable.build(parts)
        tx = Transaction(self.cfg.table)
        head = [f"add table {tx.prefix}", f"flush table {tx.prefix}"]
        wanted_chains = set(base.chains) | {c for part in parts.values() for c in part.chains}
        wanted_sets = set(base.sets) | {s for part in parts.values() for s in part.affinity_sets}
        for name in sorted(kernel_chains - wanted_chains):
            tx.delete_chain(name)
        for name in sorted(kernel_sets - wanted_sets):
            tx.delete_set(name)
        for named in base.sets.values():
            tx.add_set(named)
            if named.name in kernel_sets:
                tx.unlink.append(f"flush {'map' if named.is_map else 'set'} {tx.prefix} {named.name}")
        for chain in base.chains.values():
            tx.add_chain(chain)
            tx.add_rules(chain.name, chain.rules)
        block = tx.block
        for part in parts.values():
            for name, timeout in part.affinity_sets.items():
                tx.add_set(NamedSet(name, "ipv4_addr", timeout=timeout))
            block += part.chain_block()
        for set_name, key, owner in elements.winners():
            tx.add_elements.setdefault(set_name, []).append(parts[owner].element_text(set_name, key))
        return tx.script(head), parts, elements

    async def _partial_sync(self, services, endpoints, changed: set[str]) -> SyncStats:
        tx = Transaction(self.cfg.table)
        new_parts = {name: service_rules(self.cfg, name, services, endpoints) for name in changed}
        elements = self._elements  # changed in place: after a failure the full sync rebuilds it
        for name in sorted(changed):
            old, new = self._parts.get(name, ServiceRules()), new_parts[name]
            for set_name, key, before, after in elements.replace(name, old.elements, new.elements):
                if before is not MISSING:
                    tx.delete_element(set_name, key)
                if after is not MISSING:
                    tx.add_element(set_name, key, after)
            for chain, rules in new.chains.items():
                if chain not in old.chains:
                    tx.add_chain(Chain(chain))
                    tx.add_rules(chain, rules)
                elif old.chains[chain] != rules:
                    tx.flush_chain(chain)
                    tx.add_rules(chain, rules)
            for chain in old.chains.keys() - new.chains.keys():
                tx.flush_chain(chain)
                tx.delete_chain(chain)
            for set_name in old.affinity_sets.keys() - new.affinity_sets.keys():
                tx.delete_set(set_name)
            for set_name in new.affinity_sets.keys() - old.affinity_sets.keys():
                tx.add_set(NamedSet(set_name, "ipv4_addr", timeout=new.affinity_sets[set_name]))
        script = "" if tx.empty() else tx.script()
        if script:
            await self.runner.apply(script)
        for name, part in new_parts.items():
            if part.chains or part.elements:
                self._parts[name] = part
            else:
                self._parts.pop(name, None)
        return SyncStats(False, len(changed), script.count("\n"))

    async def _clean_conntrack(self, result: UpdateResult) -> None:
        """UDP has no end of connection: entries DNATed to an endpoint that is gone, or made
        while a Service had no endpoint, would keep sending its packets nowhere."""
        for svc, ep in result.stale_endpoints:
            for ip in (svc.cluster_ip, *svc.external_ips):
                await self.runner.conntrack_delete(["-p", "udp", "--orig-dst", ip, "--dst-nat", ep.ip])
            if svc.node_port:
                await self.runner.conntrack_delete(["-p", "udp", "--orig-port-dst", str(svc.node_port),
                                                    "--dst-nat", ep.ip])
        for svc in [*result.stale_services, *result.deleted_udp_ports]:
            for ip in (svc.cluster_ip, *svc.external_ips):
                await self.runner.conntrack_delete(["-p", "udp", "--orig-dst", ip])
            if svc.node_port:
                await self.runner.conntrack_delete(["-p", "udp", "--orig-port-dst", str(svc.node_port)])


@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
