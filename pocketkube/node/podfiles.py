"""The files a pod's containers see of the cluster's naming: /etc/hosts, /etc/resolv.conf and
the hostname, as the kubelet writes them (pure: pod spec and node files in, text out).
"""

from __future__ import annotations

HOSTS_HEADER = "# Kubernetes-managed hosts file."
NSSWITCH_CONF = ("passwd:         files\ngroup:          files\nshadow:         files\nhosts:          files dns\n"
                 "networks:       files\nprotocols:      files\nservices:       files\n")
HOSTS_BOILERPLATE = ("127.0.0.1\tlocalhost\n"
                     "::1\tlocalhost ip6-localhost ip6-loopback\n"
                     "fe00::0\tip6-localnet\n"
                     "fe00::0\tip6-mcastprefix\n"
                     "fe00::1\tip6-allnodes\n"
                     "fe00::2\tip6-allrouters\n")
MAX_DNS_SEARCH = 32
MAX_NAMESERVERS = 3


def pod_hostname(pod: dict, cluster_domain: str) -> tuple[str, str | None]:
    """The pod's hostname (spec.hostname or the pod name, at most 63 characters) and, with
    spec.subdomain, its FQDN <hostname>.<subdomain>.<ns>.svc.<cluster domain>."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    hostname = spec.get("hostname") or meta.get("name", "")
    if len(hostname) > 63:
        hostname = hostname[:63].rstrip("-.")
    subdomain = spec.get("subdomain")
    fqdn = f"{hostname}.{subdomain}.{meta.get('namespace', 'default')}.svc.{cluster_domain}" if subdomain else None
    return hostname, fqdn


def hosts_file(pod: dict, pod_ip: str, cluster_domain: str, node_hosts: str = "") -> str:
    """/etc/hosts as the kubelet writes it (managedHostsFileContent); hostNetwork pods get the
    node's hosts file under a header."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        text = "# Kubernetes-managed hosts file (host network).\n" + node_hosts
    else:
        hostname, fqdn = pod_hostname(pod, cluster_domain)
        text = HOSTS_HEADER + "\n" + HOSTS_BOILERPLATE
        text += f"{pod_ip}\t{fqdn}\t{hostname}\n" if fqdn else f"{pod_ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            text += alias.get("ip", "") + "\t" + "\t".join(alias.get("hostnames") or []) + "\n"
    return text


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers, searches, options = [], [], []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return servers, searches, options


def _merge_options(base: list[str], extra: list[dict]) -> list[str]:
    merged: dict[str, str] = {}
    for opt in base:
        name, _, value = opt.partition(":")
        merged[name] = opt
    for opt in extra:
        name = opt.get("name", "")
        merged[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    return list(merged.values())


def resolv_conf(pod: dict, cluster_dns: str, cluster_domain: str, node_resolv: str = "") -> str:
    """/etc/resolv.conf for the pod's dnsPolicy (ClusterFirst, ClusterFirstWithHostNet,
    Default, None) and dnsConfig, as the kubelet's DNS configurer builds it."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    host_servers, host_search, host_options = parse_resolv_conf(node_resolv)
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        ns = (pod.get("metadata") or {}).get("namespace", "default")
        servers = [cluster_dns]
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain] + host_search
        options = ["ndots:5"]
    elif policy == "Default":
        servers, searches, options = host_servers, list(host_search), list(host_options)
    else:
        servers, searches, options = [], [], []
    config = spec.get("dnsConfig") or {}
    servers = list(dict.fromkeys(servers + list(config.get("nameservers") or [])))[:MAX_NAMESERVERS]
    searches = list(dict.fromkeys(searches + list(config.get("searches") or [])))[:MAX_DNS_SEARCH]
    options = _merge_options(options, config.get("options") or [])
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {server}" for server in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"
