"""Several "machines" on one box, for the e2e tests (tests/e2e/test_join.py) and the bench
(bench/crossmachine.py) of a cluster spread over machines.

A `Lan` is a switch: a bridge in a network namespace of its own (`pkt-<id>-lan`; the test's LAN,
addresses in 198.18.0.0/15, the range RFC 2544 sets aside for benchmarks, which nothing on a
host routes) and, per machine, a network namespace of its own (`pkt-<id>-m<N>`) with `lan0`
cabled to that bridge. The switch's namespace has br_netfilter off (`bridge-nf-call-iptables`
is per namespace, 1 by default once the module is loaded): a switch runs no firewall, and the
host's setting would otherwise pass every frame between machines through the IP hooks.
Everything a machine runs (`pocketkube up`, `join`, kubectl, curl) runs inside its namespace:
the host's namespace holds nothing of the LAN. `close()` runs `pocketkube down` for what each
machine started, stops any process left in a machine's namespace, and removes the namespaces,
also after a failure.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

from pocketkube.cli import up as up_cmd
from pocketkube.node import network

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAN_RANGE = "198.18.0.0/15"


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return network._run(["ip", *args], netns=netns, check=check)


@dataclass
class Machine:
    lan: "Lan"
    index: int
    netns: str
    address: str
    env: dict
    names: list[str] = field(default_factory=list)  # what `pocketkube up` / `join` made here (their names)
    data_dir: str = ""

    def run(self, argv: list[str], timeout: float = 180, input: str | None = None) -> subprocess.CompletedProcess:
        """A command inside this machine's namespace."""
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=self.env,
                              cwd=ROOT, preexec_fn=network.enter_netns(self.netns))

    def pocketkube(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "pocketkube.cli.main", *args], timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cp = self.run(["kubectl", *args], timeout=timeout, input=input)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        return cp

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


class Lan:
    def __init__(self, base_dir: str, machines: int = 2):
        self.id = uuid.uuid4().hex[:5]
        self.switch = f"pkt-{self.id}-lan"  # the switch's namespace
        self.bridge = "lan"
        self.base_dir = base_dir
        subnet = self._free_subnet()
        self.subnet = subnet
        self.machines: list[Machine] = []
        try:
            _ip("netns", "add", self.switch)
            network._run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
                          "net.bridge.bridge-nf-call-arptables=0"], netns=self.switch, check=False)  # absent without br_netfilter
            network._run(["ip", "-batch", "-"], f"link add {self.bridge} type bridge\nlink set {self.bridge} up\n",
                         netns=self.switch)
            for i in range(1, machines + 1):
                self.add_machine(i)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = [ipaddress.ip_network(r["dst"], strict=False) for r in network._routes()
                if r.get("dst") not in (None, "default")]
        for candidate in ipaddress.ip_network(LAN_RANGE).subnets(new_prefix=24):
            if not any(candidate.overlaps(u) for u in used):
                return candidate
        raise RuntimeError(f"no free /24 in {LAN_RANGE} on this host")

    def add_machine(self, index: int) -> Machine:
        netns = f"pkt-{self.id}-m{index}"
        address = str(self.subnet.network_address + 10 + index)
        _ip("netns", "add", netns)
        _ip("link", "add", self.cable(index), "type", "veth", "peer", "name", "lan0", "netns", netns, netns=self.switch)
        _ip("link", "set", self.cable(index), "master", self.bridge, "up", netns=self.switch)
        network._run(["ip", "-batch", "-"], f"link set lo up\naddr add {address}/24 dev lan0\nlink set lan0 up\n",
                     netns=netns)
        home = os.path.join(self.base_dir, f"m{index}")
        os.makedirs(home, exist_ok=True)
        env = {**os.environ, "KUBECONFIG": os.path.join(home, "kubeconfig"),
               "KUBECACHEDIR": os.path.join(home, "kubecache"), "PYTHONPATH": ROOT}
        machine = Machine(self, index, netns, address, env)
        self.machines.append(machine)
        return machine

    def cable(self, index: int) -> str:
        """Machine `index`'s link on the switch (in the switch's namespace)."""
        return f"m{index}"

    def close(self) -> list[str]:
        """Take everything down (joined machines first); returns what could not be removed."""
        problems = []
        for machine in reversed(self.machines):
            for name in reversed(machine.names):
                cp = machine.pocketkube("down", "--name", name)
                if cp.returncode != 0 or up_cmd.leftovers(name):
                    problems.append(f"down --name {name}: {cp.stdout}{cp.stderr}")
                    up_cmd.teardown(name, None)
        for machine in self.machines:  # `down` left the machine as it found it
            links = [link["ifname"] for link in json.loads(_ip("-j", "link", "show", netns=machine.netns).stdout or "[]")]
            if set(links) - {"lo", "lan0"}:
                problems.append(f"links left on machine {machine.index}: {links}")
            tables = network._run(["nft", "list", "tables"], netns=machine.netns, check=False).stdout.strip()
            if tables:
                problems.append(f"nftables tables left on machine {machine.index}: {tables}")
            routes = [r.get("dst") for r in json.loads(_ip("-j", "route", "show", netns=machine.netns).stdout or "[]")]
            if routes != [str(self.subnet)]:
                problems.append(f"routes left on machine {machine.index}: {routes}")
        for machine in self.machines:
            for _ in range(3):
                left = set(network.pids_in_netns([machine.netns])) - {os.getpid()}
                if not left:
                    break
                up_cmd.stop_processes(left, set(), grace=2.0)
            _ip("netns", "del", machine.netns, check=False)
        _ip("netns", "del", self.switch, check=False)  # the bridge and the machines' cables with it
        return problems


JOIN_RE = re.compile(r"^(pocketkube join .*)$", re.M)


def join_command(up_output: str) -> list[str]:
    match = JOIN_RE.search(up_output)
    if not match:
        raise AssertionError(f"`pocketkube up` printed no join command:\n{up_output}")
    return match.group(1).split()[1:]
