"""A small rtnetlink client: the few link, address and route requests a pod sandbox needs,
made in-process instead of forking `ip` (docs/adr/0004-netlink.md).

`Netlink(netns_path)` is one NETLINK_ROUTE socket, opened in that network namespace (None:
the caller's). The socket is made by a thread that enters the namespace only for the
socket() call, so no thread of the agent is left in another namespace; the socket then
works in the namespace it was made in, whoever uses it. Each request waits for the
kernel's acknowledgement and raises `NetlinkError` (an OSError with the errno) on failure.

`wire_pod(...)` is what `ip link add ... peer name eth0 netns PID; link set ... master cni0;
hairpin on; up` plus `addr add; link set eth0 up; route add default` did. It runs in the pod's
sandbox init (nsinit.py, in the new process that has just made the pod's network namespace,
with a socket it opened in the node's before), so this module needs only the standard library
when imported: nsinit.py loads it by its path (docs/adr/0024, session 9).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24

IFF_UP = 0x1
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_PID = 19
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin

IFA_LOCAL = 2
IFA_ADDRESS = 1
RTA_GATEWAY = 5
RTA_OIF = 4
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_HOST = 254
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """A request the kernel refused (errno and strerror as for any OSError)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr (type, length, payload padded to 4 bytes)."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def name_attr(kind: int, name: str) -> bytes:
    return attr(kind, name.encode() + b"\0")


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


def _packed(address: str) -> tuple[int, bytes]:
    """The address family and the packed form of an IPv4 or IPv6 address (without the
    ipaddress module: the spawner loads this module, and every process it forks copies it)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return family, socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"{address!r} is not an IP address") from None


def _socket_in(netns_path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket of `netns_path`'s network namespace (None: this thread's)."""
    if netns_path is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    from pocketkube.core.netns import socket_in  # the agent's only: nsinit.py opens its own in place

    return socket_in(netns_path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)


class Netlink:
    """One rtnetlink socket (see the module docstring). Not thread-safe: one user at a time."""

    def __init__(self, netns_path: str | None = None):
        self.sock = _socket_in(netns_path)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _answers(self, msg_type: int, flags: int, body: bytes):
        """Send one request; yield (type, data, offset of its payload) of each answer to it."""
        self.seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, self.seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise NetlinkError(errno.EPROTO, "malformed netlink answer")
                if seq == self.seq:
                    yield kind, data, offset + _NLMSGHDR.size
                offset += _align(length)

    @staticmethod
    def _error(data: bytes, offset: int) -> int:
        """The errno of an NLMSG_ERROR answer (0: an acknowledgement)."""
        return -struct.unpack_from("=i", data, offset)[0]

    def request(self, msg_type: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for its acknowledgement."""
        for kind, data, offset in self._answers(msg_type, flags | NLM_F_ACK, body):
            if kind == NLMSG_ERROR:
                code = self._error(data, offset)
                if code:
                    raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                return

    def link_index(self, name: str) -> int:
        """The interface index of `name` in this socket's namespace (NetlinkError ENODEV if none)."""
        for kind, data, offset in self._answers(RTM_GETLINK, 0, ifinfo() + name_attr(IFLA_IFNAME, name)):
            if kind == NLMSG_ERROR:
                code = self._error(data, offset) or errno.EPROTO
                raise NetlinkError(code, f"link {name}: {os.strerror(code)}")
            if kind == RTM_NEWLINK:
                return _IFINFOMSG.unpack_from(data, offset)[2]
        raise NetlinkError(errno.EPROTO, f"link {name}: no answer")

    def add_veth(self, name: str, peer: str, peer_netns_pid: int | None = None, master: int | None = None,
                 peer_netns_fd: int | None = None) -> None:
        """`ip link add NAME [master M] up type veth peer name PEER netns PID` (or the namespace
        of an open /proc/PID/ns/net: `peer_netns_fd`)."""
        where = (attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)) if peer_netns_fd is not None
                 else attr(IFLA_NET_NS_PID, struct.pack("=I", peer_netns_pid)))
        peer_info = ifinfo() + name_attr(IFLA_IFNAME, peer) + where
        linkinfo = nested(IFLA_LINKINFO, name_attr(IFLA_INFO_KIND, "veth"),
                          nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info)))
        body = ifinfo(flags=IFF_UP, change=IFF_UP) + name_attr(IFLA_IFNAME, name) + linkinfo
        if master is not None:
            body += attr(IFLA_MASTER, struct.pack("=I", master))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"add veth {name}")

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """`ip link set DEV type bridge_slave hairpin on`."""
        linkinfo = nested(IFLA_LINKINFO, name_attr(IFLA_INFO_SLAVE_KIND, "bridge"),
                          nested(IFLA_INFO_SLAVE_DATA, attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))))
        self.request(RTM_NEWLINK, 0, ifinfo(index=index) + linkinfo, "set hairpin")

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, ifinfo(index=index, flags=IFF_UP, change=IFF_UP), "set link up")

    def add_address(self, index: int, address: str, prefix_len: int) -> None:
        family, packed = _packed(address)
        body = _IFADDRMSG.pack(family, prefix_len, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {address}/{prefix_len}")

    def add_default_route(self, gateway: str, index: int) -> None:
        family, packed = _packed(gateway)
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        body += attr(RTA_GATEWAY, packed) + attr(RTA_OIF, struct.pack("=I", index))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"add default route via {gateway}")

    def delete_link(self, name: str) -> bool:
        """`ip link del NAME`; False if there is no such link."""
        try:
            self.request(RTM_DELLINK, 0, ifinfo() + name_attr(IFLA_IFNAME, name), f"delete link {name}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise
        return True


def wire_pod(node: Netlink, pod: Netlink, pod_netns_fd: int, veth: str, bridge: str,
             ip: str, prefix_len: int, gateway: str) -> None:
    """A pod's network: veth `veth` on `bridge` (hairpin, up) in `node`'s namespace, its peer
    `eth0` in the pod's (`pod_netns_fd`, where `pod` was opened) with `ip`/`prefix_len`, lo and
    eth0 up, default route via `gateway`. Blocking (a few system calls)."""
    node.add_veth(veth, "eth0", peer_netns_fd=pod_netns_fd, master=node.link_index(bridge))
    node.set_hairpin(node.link_index(veth))
    pod.set_up(pod.link_index("lo"))
    eth0 = pod.link_index("eth0")
    pod.add_address(eth0, ip, prefix_len)
    pod.set_up(eth0)
    pod.add_default_route(gateway, eth0)


def delete_link(netns: str | None, name: str) -> bool:
    with Netlink(netns) as nl:
        return nl.delete_link(name)
