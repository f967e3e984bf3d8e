"""Pod IP addresses of one node (host-local IPAM): see `Ipam`."""

from __future__ import annotations

import ipaddress
import json
import os

from pocketkube.core.linux import write_atomic


class IpamError(Exception):
    """No address left in the node's range."""


class Ipam:
    """Pod IPs of the node's /24 (host-local style: round robin from .2, .1 is the gateway),
    persisted as {ip: uid} so a restarted agent never hands out an IP a live pod holds."""

    def __init__(self, path: str, cidr: str):
        self.path = path
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.gateway = str(self.network.network_address + 1)
        self.prefix_len = self.network.prefixlen
        self._hosts = [str(ip) for ip in self.network.hosts()][1:]  # skip the gateway
        self._index = {ip: i for i, ip in enumerate(self._hosts)}
        self.allocations: dict[str, str] = {}
        self.last = ""
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.allocations = dict(saved.get("allocations") or {})
            self.last = saved.get("last", "")

    def _save(self) -> None:
        write_atomic(self.path, json.dumps({"allocations": self.allocations, "last": self.last}).encode())

    def _candidates(self) -> list[str]:
        hosts = self._hosts
        start = self._index.get(self.last, -1) + 1
        return hosts[start:] + hosts[:start]

    def allocate(self, uid: str) -> str:
        for ip, owner in self.allocations.items():
            if owner == uid:
                return ip
        for ip in self._candidates():
            if ip not in self.allocations:
                self.allocations[ip] = uid
                self.last = ip
                self._save()
                return ip
        raise IpamError(f"failed to allocate an IP for the pod: the range {self.network} is exhausted")

    def release(self, uid: str) -> None:
        kept = {ip: owner for ip, owner in self.allocations.items() if owner != uid}
        if kept != self.allocations:
            self.allocations = kept
            self._save()

    def retain(self, uids: set[str]) -> None:
        """Forget every allocation whose pod is not in `uids` (after adoption)."""
        kept = {ip: owner for ip, owner in self.allocations.items() if owner in uids}
        if kept != self.allocations:
            self.allocations = kept
            self._save()
