"""What a pod's stub resolver does with a name, for `pocketkube explain-dns`: the queries its
search list and ndots produce, in order, and why the lookup succeeded or failed. Pure: the
caller supplies the resolv.conf and a function that asks one name.

The order is glibc's res_nsearch (musl agrees except where noted):

- a name with a trailing dot is absolute: asked as is, and nothing else;
- a name with at least `ndots` dots is asked as is first, then with each search domain
  (musl stops after the name as is);
- any other name is asked with each search domain first, then as is.

The walk goes on after NXDOMAIN, after an empty answer (NODATA) and after SERVFAIL, and stops
at the first answer with records, or at any other error (REFUSED, FORMERR, NOTIMP), as glibc
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pocketkube.dns import wire
from pocketkube.dns.wire import RR

DEFAULT_NDOTS = 1   # glibc's and musl's default when resolv.conf sets none
MAX_NDOTS = 15      # glibc's RES_MAXNDOTS: larger values are cut to it
KEEP_GOING = frozenset((wire.NXDOMAIN, wire.NOERROR, wire.SERVFAIL))


def ndots_option(options: list[str]) -> int:
    """The ndots of a resolv.conf's `options` (the last one wins, as in glibc)."""
    ndots = DEFAULT_NDOTS
    for opt in options:
        name, _, value = opt.partition(":")
        if name == "ndots" and value.isdigit():
            ndots = min(int(value), MAX_NDOTS)
    return ndots


def candidates(name: str, searches: list[str], ndots: int) -> list[str]:
    """The absolute names (with the final dot) a resolver asks for `name`, in order."""
    if name.endswith("."):
        return [name]
    absolute = name + "."
    searched = [f"{name}.{domain.strip('.')}." for domain in searches if domain.strip(".")]
    searched = [n for n in dict.fromkeys(searched) if n != absolute]
    if name.count(".") >= ndots:
        return [absolute] + searched
    return searched + [absolute]


def order_rule(name: str, ndots: int) -> str:
    """One line saying which rule `candidates` applied."""
    if name.endswith("."):
        return f'"{name}" ends with a dot: it is absolute, asked as is and nothing else'
    dots = name.count(".")
    plural = "dot" if dots == 1 else "dots"
    if dots >= ndots:
        return (f'"{name}" has {dots} {plural} (>= ndots {ndots}): asked as is first, then with each search '
                "domain (musl: as is only)")
    return f'"{name}" has {dots} {plural} (< ndots {ndots}): each search domain first, then the name as is'


@dataclass
class Step:
    """One query and what came back."""

    query: str                     # the absolute name asked
    rcode: int
    answer: list[RR] = field(default_factory=list)
    reason: str = ""               # why the server answered so (records.Answer.reason)

    @property
    def resolved(self) -> bool:
        return self.rcode == wire.NOERROR and bool(self.answer)

    @property
    def outcome(self) -> str:
        if self.rcode == wire.NOERROR and not self.answer:
            return "NOERROR, no records (NODATA)"
        return wire.RCODE_NAMES.get(self.rcode, str(self.rcode))


def walk(names: list[str], ask: Callable[[str], Step]) -> list[Step]:
    """Ask the names in order as the resolver does (module docstring): the steps taken."""
    steps = []
    for name in names:
        step = ask(name)
        steps.append(step)
        if step.resolved or step.rcode not in KEEP_GOING:
            break
    return steps


def summary(answer: list[RR]) -> str:
    """`10.96.0.5`, `CNAME www.example.com. → 192.0.2.1`, `0 100 80 svc.ns.svc.cluster.local.`"""
    parts = []
    for rr in answer:
        if rr.type == wire.CNAME:
            parts.append(f"CNAME {rr.data}")
        elif rr.type in (wire.SRV, wire.SOA, wire.TXT):
            parts.append(" ".join(str(x) for x in rr.data))
        else:
            parts.append(str(rr.data))
    chain = [p for p in parts if p.startswith("CNAME ")]
    rest = [p for p in parts if not p.startswith("CNAME ")]
    return " → ".join(chain + ([", ".join(rest)] if rest else []))


def verdict(steps: list[Step], names: list[str]) -> str:
    """The last line: which query resolved the name, or why none did."""
    if not steps:
        return "nothing was asked"
    last = steps[-1]
    if last.resolved:
        text = f"resolved by query {len(steps)}: {last.query.rstrip('.')} → {summary(last.answer)}"
        if all(rr.type == wire.CNAME for rr in last.answer):
            text += " (only an alias came back: the target's own address was not found)"
        return text
    if last.rcode not in KEEP_GOING:
        return (f"stopped at query {len(steps)} ({last.query}): {last.outcome} ends the lookup; the resolver "
                "tries no further names")
    if all(s.rcode == wire.NXDOMAIN for s in steps):
        return "NXDOMAIN for every candidate: " + ", ".join(s.query for s in steps)
    return "no candidate resolved: " + "; ".join(f"{s.query} {s.outcome}" for s in steps)


def render(name: str, qtype: str, names: list[str], steps: list[Step], ndots: int, header: list[str]) -> str:
    """The whole explanation: header lines, the order rule, each query, the verdict."""
    lines = list(header)
    lines.append(order_rule(name, ndots))
    lines.append("")
    for i, step in enumerate(steps, 1):
        lines.append(f"{i}. {step.query} {qtype} → {step.outcome}")
        lines += [f"     {rr.to_text(step.query)}" for rr in step.answer]
        if step.reason:
            lines.append(f"     why: {step.reason}")
    if len(steps) < len(names):
        lines.append("   not asked: " + ", ".join(names[len(steps):]))
    lines.append("")
    lines.append(verdict(steps, names))
    return "\n".join(lines) + "\n"
