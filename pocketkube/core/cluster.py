"""The cluster's names and default addresses: the one home of the conventions the node network,
the proxy, the packet tracer, the agent and `up` share (DESIGN.md, "The network").

Every name a cluster makes carries its cluster name, so `down` knows what is its own:
network namespaces by their name (`pk-<name>-n<N>` for nodes, `pk-<name>-p-<hex>` for pods),
host links by their alias (`pocketkube cluster <name>`; their names are cut to 15
characters, `interface_name`), nftables tables by their name (`pk-<name>`, `pk-<name>-<what>`,
`pk-<name>_<what>`; the proxy's is `pk-<name>-proxy`). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re

DEFAULT_NAME = "pocketkube"
# The first cluster's ranges when nothing is in the way; a cluster's own are chosen by `up`
# (core/ranges.py) and kept in its record.
NODE_SUBNET = "172.18.0.0/24"     # the host is .1, node N is .(N+1)
HOST_ADDRESS = "172.18.0.1"       # the host on the node network (the API server listens there too)
CLUSTER_CIDR = "10.244.0.0/16"    # pods: node N holds 10.244.N.0/24
SERVICE_CIDR = "10.96.0.0/12"
CLUSTER_DNS = "10.96.0.10"        # Service kube-dns
CLUSTER_DOMAIN = "cluster.local"
POD_BRIDGE = "cni0"               # in each node: the pods' veths and the pod range's gateway
NODE_INTERFACE = "eth0"           # a node's link to the node network
MAX_NAME_LENGTH = 20              # keeps `pk-<name>-p-<8 hex>` under 32 characters
IFNAMSIZ = 15

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_cluster_name(name: str) -> None:
    """Raise ValueError unless `name` can name a cluster (a short DNS label: it becomes part of
    node names, namespace names and interface names)."""
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise ValueError(f"invalid cluster name {name!r}: use at most {MAX_NAME_LENGTH} lowercase letters, "
                         "digits and '-', starting and ending with a letter or digit")


def interface_name(prefix: str, cluster: str, suffix: str = "") -> str:
    """`prefix + cluster + suffix`, or, when that passes the kernel's 15 characters, the
    cluster name cut short and followed by 4 hex digits of its hash (stable, and distinct
    for two names that share their first letters)."""
    full = prefix + cluster + suffix
    if len(full) <= IFNAMSIZ:
        return full
    digest = hashlib.sha1(cluster.encode()).hexdigest()[:4]
    keep = IFNAMSIZ - len(prefix) - len(suffix) - len(digest)
    return prefix + cluster[:keep] + digest + suffix


def host_bridge(cluster: str) -> str:
    """The node network's bridge on the host: `pk0` for the default cluster, `pk-<name>` otherwise."""
    return "pk0" if cluster == DEFAULT_NAME else interface_name("pk-", cluster)


def node_netns(cluster: str, index: int) -> str:
    return f"pk-{cluster}-n{index}"


def pod_netns_name(node_netns_name: str, pod_uid: str) -> str:
    """The name of a pod's network namespace, from its node's (`pk-<name>-n<N>`) and the pod's
    uid: `pk-<name>-p-<first 8 hex of the uid>`, which `down` recognises as the cluster's."""
    match = re.match(r"^(pk-.+)-n\d+$", node_netns_name)
    if not match:
        raise ValueError(f"not a node namespace name: {node_netns_name!r}")
    return f"{match.group(1)}-p-{pod_uid.replace('-', '')[:8].lower()}"


def link_alias(cluster: str) -> str:
    return f"pocketkube cluster {cluster}"


def proxy_table(cluster: str) -> str:
    """The service proxy's nftables table: `pk-<cluster>-proxy`."""
    return f"pk-{cluster}-proxy"


def owns_netns(cluster: str, netns: str) -> bool:
    """Whether a namespace name is one of cluster's nodes (`pk-<c>-n<N>`) or pods
    (`pk-<c>-p-<hex>`). No other cluster's names can match: hex digits hold no 'n' and no '-'."""
    return re.fullmatch(rf"pk-{re.escape(cluster)}-(n\d+|p-[0-9a-f]+)", netns) is not None


def owns_nft_table(cluster: str, table: str, other_clusters: tuple[str, ...] = ()) -> bool:
    """Whether an nftables table name is cluster's: `pk-<c>`, `pk-<c>-<what>` or `pk-<c>_<what>`,
    unless a longer cluster name among `other_clusters` claims it (`pk-a-b` is cluster a-b's)."""
    def claims(name: str) -> bool:
        base = f"pk-{name}"
        return table == base or table.startswith(base + "-") or table.startswith(base + "_")

    if not claims(cluster):
        return False
    return not any(len(other) > len(cluster) and claims(other) for other in other_clusters)


def cluster_of_netns(netns: str) -> str | None:
    """The cluster a node namespace (`pk-<c>-n<N>`) belongs to, or None."""
    match = re.fullmatch(r"pk-(.+)-n\d+", netns)
    return match.group(1) if match else None
