"""The proxy's nftables rules as data: the one intermediate form that is both rendered to
`nft -f` text (nftables.py) and executed by the packet tracer (trace.py).

A rule is a tuple of expressions, read left to right as nft reads it: matches (a false one
ends the rule), statements (marks, set updates, NAT) and at most one verdict. Each
expression knows its own nft text; what it means to a packet lives in the tracer. Only the
vocabulary the proxy needs exists here, so every rule the proxy writes can be traced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

MASQUERADE_BIT = 0x4000


# ---- matches ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class IpMatch:
    """`ip saddr 10.244.1.5`, `ip daddr != 10.244.0.0/16`: an address or a CIDR."""
    field: str  # "saddr" or "daddr"
    value: str
    negate: bool = False

    def nft(self) -> str:
        return f"ip {self.field} {'!= ' if self.negate else ''}{self.value}"


@dataclass(frozen=True, slots=True)
class IpInRanges:
    """`ip saddr != { 10.0.0.0/8, 192.168.1.0/24 }`: one of several addresses or CIDRs."""
    field: str
    values: tuple[str, ...]
    negate: bool = False

    def nft(self) -> str:
        return f"ip {self.field} {'!= ' if self.negate else ''}{{ {', '.join(self.values)} }}"


@dataclass(frozen=True, slots=True)
class IpInSet:
    """`ip daddr @cluster-ips`, `ip saddr @affinity-...`."""
    field: str
    set_name: str

    def nft(self) -> str:
        return f"ip {self.field} @{self.set_name}"


@dataclass(frozen=True, slots=True)
class AddressPairInSet:
    """`ip saddr . ip daddr @set`: source and destination together (hairpin detection)."""
    set_name: str

    def nft(self) -> str:
        return f"ip saddr . ip daddr @{self.set_name}"


@dataclass(frozen=True, slots=True)
class PortMatch:
    """`tcp dport 80`."""
    protocol: str  # tcp, udp, sctp
    port: int

    def nft(self) -> str:
        return f"{self.protocol} dport {self.port}"


@dataclass(frozen=True, slots=True)
class ProtocolMatch:
    """`meta l4proto tcp` (also what lets a following `dnat to ip:port` name a port)."""
    protocol: str

    def nft(self) -> str:
        return f"meta l4proto {self.protocol}"


@dataclass(frozen=True, slots=True)
class FibLocal:
    """`fib daddr type local`: the address is one of this node's own."""
    field: str

    def nft(self) -> str:
        return f"fib {self.field} type local"


@dataclass(frozen=True, slots=True)
class CtStateNew:
    def nft(self) -> str:
        return "ct state new"


@dataclass(frozen=True, slots=True)
class CtStatusDnat:
    """The connection's destination was rewritten (by a Service's DNAT)."""

    def nft(self) -> str:
        return "ct status dnat"


@dataclass(frozen=True, slots=True)
class MarkClear:
    """`mark and 0x4000 == 0`."""
    bit: int

    def nft(self) -> str:
        return f"mark and {self.bit:#x} == 0"


@dataclass(frozen=True, slots=True)
class RandomOneIn:
    """`numgen random mod N 0`: true for one packet in N (a fresh draw per rule)."""
    modulus: int

    def nft(self) -> str:
        return f"numgen random mod {self.modulus} 0"


# ---- lookups that decide the verdict ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class ServiceVmap:
    """`ip daddr . meta l4proto . th dport vmap @map`: the one lookup dispatching Services."""
    map_name: str

    def nft(self) -> str:
        return f"ip daddr . meta l4proto . th dport vmap @{self.map_name}"


@dataclass(frozen=True, slots=True)
class PortVmap:
    """`meta l4proto . th dport vmap @map` (node ports: any local address)."""
    map_name: str

    def nft(self) -> str:
        return f"meta l4proto . th dport vmap @{self.map_name}"


# ---- statements -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SetMark:
    op: str  # "or" or "xor"
    bit: int

    def nft(self) -> str:
        return f"mark set mark {self.op} {self.bit:#x}"


@dataclass(frozen=True, slots=True)
class UpdateSet:
    """`update @set { ip saddr }`: remember the client (restarting the set's timeout)."""
    set_name: str

    def nft(self) -> str:
        return f"update @{self.set_name} {{ ip saddr }}"


@dataclass(frozen=True, slots=True)
class Dnat:
    """`dnat to 10.244.1.5:8080` (terminal: the packet is accepted)."""
    address: str
    port: int

    def nft(self) -> str:
        return f"dnat to {self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Masquerade:
    def nft(self) -> str:
        return "masquerade fully-random"


@dataclass(frozen=True, slots=True)
class Reject:
    """`reject with tcp reset` (tcp only) or `reject` (ICMP port unreachable)."""
    tcp_reset: bool = False

    def nft(self) -> str:
        return "reject with tcp reset" if self.tcp_reset else "reject"


@dataclass(frozen=True, slots=True)
class Verdict:
    """`jump X`, `goto X`, `return`, `drop`, `accept`."""
    kind: str
    chain: str = ""

    def nft(self) -> str:
        return f"{self.kind} {self.chain}" if self.chain else self.kind


Expr = Union[IpMatch, IpInSet, AddressPairInSet, PortMatch, ProtocolMatch, FibLocal, CtStateNew, CtStatusDnat,
             MarkClear, RandomOneIn, ServiceVmap, PortVmap, SetMark, UpdateSet, Dnat, Masquerade, Reject, Verdict]
Rule = tuple  # tuple[Expr, ...]


def goto(chain: str) -> Verdict:
    return Verdict("goto", chain)


def jump(chain: str) -> Verdict:
    return Verdict("jump", chain)


DROP = Verdict("drop")
RETURN = Verdict("return")


def render_rule(rule: Rule) -> str:
    return " ".join([expr.nft() for expr in rule])


# ---- containers -------------------------------------------------------------------------

@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain: `type nat hook prerouting priority dstnat`."""
    type: str
    hook: str
    priority: str  # nft accepts names with offsets: "dstnat", "dstnat + 10", "-110"

    def nft(self) -> str:
        return f"type {self.type} hook {self.hook} priority {self.priority} ;"


@dataclass
class Chain:
    name: str
    rules: list[Rule] = field(default_factory=list)
    hook: Hook | None = None


@dataclass
class NamedSet:
    """A set or a verdict map. Map elements map a key tuple to a Verdict; set elements map
    a key tuple to None. `timeout` > 0 makes a dynamic set whose entries expire."""
    name: str
    key_type: str  # e.g. "ipv4_addr . inet_proto . inet_service"
    is_map: bool = False
    timeout: int = 0
    elements: dict[tuple, Verdict | None] = field(default_factory=dict)

    def declaration(self) -> str:
        if self.is_map:
            return f"{{ type {self.key_type} : verdict ; }}"
        if self.timeout:
            return f"{{ type {self.key_type} ; flags dynamic,timeout ; timeout {self.timeout}s ; }}"
        return f"{{ type {self.key_type} ; }}"


def render_element(key: tuple, value: Verdict | None) -> str:
    text = " . ".join([str(part) for part in key])
    return f"{text} : {value.nft()}" if value is not None else text


@dataclass
class Ruleset:
    """One table: chains, sets and maps, everything the tracer needs to follow a packet."""
    family: str
    table: str
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NamedSet] = field(default_factory=dict)

    def add_chain(self, chain: Chain) -> Chain:
        self.chains[chain.name] = chain
        return chain

    def add_set(self, named: NamedSet) -> NamedSet:
        self.sets[named.name] = named
        return named

    def base_chains(self) -> list[Chain]:
        return [c for c in self.chains.values() if c.hook is not None]

    def render(self) -> str:
        """The whole table as `nft -f` input that replaces any previous one."""
        prefix = f"{self.family} {self.table}"
        lines = [f"add table {prefix}", f"delete table {prefix}", f"add table {prefix}"]
        for named in self.sets.values():
            kind = "map" if named.is_map else "set"
            lines.append(f"add {kind} {prefix} {named.name} {named.declaration()}")
        for chain in self.chains.values():
            hook = f" {{ {chain.hook.nft()} }}" if chain.hook else ""
            lines.append(f"add chain {prefix} {chain.name}{hook}")
        for chain in self.chains.values():
            lines += [f"add rule {prefix} {chain.name} {render_rule(rule)}" for rule in chain.rules]
        for named in self.sets.values():
            if named.elements:
                elements = ", ".join(render_element(k, v) for k, v in named.elements.items())
                lines.append(f"add element {prefix} {named.name} {{ {elements} }}")
        return "\n".join(lines) + "\n"
