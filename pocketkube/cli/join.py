"""`pocketkube join` and `pocketkube token create|list|delete`: nodes on other machines, as kubeadm joins them.

The control plane's side (`up --advertise-address ADDR` calls `prepare_cluster`): what
`kubeadm init` leaves for joining nodes, all through the API:
- a bootstrap token (core/bootstraptoken.py; `token create` makes more), whose group
  `system:bootstrappers:kubeadm:default-node-token` may create CertificateSigningRequests
  (`kubeadm:kubelet-bootstrap`) that are approved automatically (`kubeadm:node-autoapprove-bootstrap`,
  and `kubeadm:node-autoapprove-certificate-rotation` for `system:nodes`);
- `kube-public/cluster-info` (a kubeconfig naming the server and its CA), which anonymous users
  may read (`kubeadm:bootstrap-signer-clusterinfo`);
- pocketkube's own: `kube-system/pocketkube-network` (the cluster's name and ranges, which the
  joining node reads to place itself) and the Secret `kube-system/pocketkube-kubelet-client`
  (what the API server presents to node agents for exec, logs and port-forward).

The joining machine's side (`join`), as `kubeadm join` and the kubelet's TLS bootstrap:
1. discovery: read cluster-info without trusting the server yet, and trust its CA only if the
   SHA-256 of the CA's public key is `--discovery-token-ca-cert-hash` (or with
   `--discovery-token-unsafe-skip-ca-verification`);
2. TLS bootstrap: as `system:bootstrap:<token id>`, create a CertificateSigningRequest for
   `CN=system:node:<name>, O=system:nodes` (signer kubernetes.io/kube-apiserver-client-kubelet)
   and wait for the controller to approve and sign it; the node's kubeconfig holds that client
   certificate from then on;
3. place the node: the lowest node number no other Node uses (its address in the node network and
   its pod /24 follow, as for `up`'s nodes), then make this machine's part of the network as `up`
   does (bridge, the node's namespace), with one addition: an nftables table `pk-<name>-join` that
   sends what the node and its pods send to the bridge address's API port on to the API server
   (as k3s's agent load balancer: every node reaches the API server at the bridge address);
4. start (under a supervisor, as `up`) the node agent in the node's namespace and the VXLAN overlay
   (node/overlay.py) in the machine's; wait until the Node is Ready. The proxy and DNS are
   DaemonSet/Deployment pods: the cluster runs a proxy on the new node by itself.

On this machine the join is a cluster of its own name (the node's name): `pocketkube status
--name NODE` shows it and `pocketkube down --name NODE` stops it and removes what it made.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from pocketkube.cli import supervisor, up as cluster_cli
from pocketkube.cli.helptext import examples
from pocketkube.core import bootstraptoken
from pocketkube.core import cluster as names
from pocketkube.core.tls import insecure_client_context
from pocketkube.node import network

CLUSTER_INFO = "cluster-info"
NETWORK_CONFIGMAP = "pocketkube-network"
KUBELET_CLIENT_SECRET = "pocketkube-kubelet-client"
CSR_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
OVERLAY_COMMAND = (sys.executable, "-m", "pocketkube.cli.main", "overlay")
CSR_WAIT_SECONDS = 60.0


class JoinError(cluster_cli.UpError):
    """A reason `join` stops, with the message to print."""


# ---- the control plane's side ---------------------------------------------------------------


def _binding(name: str, role: str, kind: str, subject: str, namespace: str | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
            "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                          "kind": "Role" if namespace else "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]}


def join_objects(record, ca_pem: bytes, server_url: str, kubelet_client_token: str) -> list[dict]:
    """What `kubeadm init` leaves for joining nodes (see the module docstring), for `record`."""
    net = record.network
    cluster_info = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "users": None, "contexts": None,
                    "clusters": [{"name": "", "cluster": {"certificate-authority-data": base64.b64encode(ca_pem).decode(),
                                                          "server": server_url}}]}
    import yaml

    return [
        _binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", "Group", bootstraptoken.DEFAULT_NODE_GROUP),
        _binding("kubeadm:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                 "Group", bootstraptoken.DEFAULT_NODE_GROUP),
        _binding("kubeadm:node-autoapprove-certificate-rotation",
                 "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CLUSTER_INFO], "verbs": ["get"]}]},
        _binding("kubeadm:bootstrap-signer-clusterinfo", "kubeadm:bootstrap-signer-clusterinfo", "User",
                 "system:anonymous", namespace="kube-public"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CLUSTER_INFO, "namespace": "kube-public"},
         "data": {"kubeconfig": yaml.safe_dump(cluster_info, sort_keys=False)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NETWORK_CONFIGMAP, "namespace": "kube-system"},
         "data": {"clusterName": record.name, "nodeSubnet": str(net.node_subnet), "podCIDR": str(net.pod_cidr),
                  "serviceCIDR": str(net.service_cidr), "lbRange": net.lb_range}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": KUBELET_CLIENT_SECRET, "namespace": "kube-system"},
         "data": {"token": base64.b64encode(kubelet_client_token.encode()).decode()}},
    ]


def join_command(server_url: str, token: str, ca_pem: bytes) -> str:
    return (f"pocketkube join --server {server_url} --token {token} "
            f"--discovery-token-ca-cert-hash {bootstraptoken.ca_cert_hash(ca_pem)}")


async def _create_token(client, ttl_seconds: int, description: str) -> str:
    token = bootstraptoken.generate()
    await client.create("v1", "secrets", bootstraptoken.secret_for(token, ttl_seconds, description),
                        namespace=bootstraptoken.NAMESPACE)
    return token


def prepare_cluster(record) -> str:
    """Leave what joining nodes need in the cluster `up` just started; returns the join command."""
    from pocketkube import addons

    with open(os.path.join(record.server_dir, "pki", "ca.crt"), "rb") as f:
        ca_pem = f.read()
    with open(os.path.join(record.server_dir, "kubelet-client-token")) as f:
        kubelet_token = f.read().strip()
    server_url = f"https://{record.advertise_address}:{record.port}"

    async def run() -> str:
        client = cluster_cli.admin_client(record)
        try:
            await addons.apply(client, join_objects(record, ca_pem, server_url, kubelet_token))
            return await _create_token(client, bootstraptoken.DEFAULT_TTL_SECONDS,
                                       "The default bootstrap token generated by 'pocketkube up'.")
        finally:
            await client.close()

    return join_command(server_url, asyncio.run(run()), ca_pem)


def _control_plane(cluster: str):
    names.validate_cluster_name(cluster)
    record = cluster_cli.ClusterRecord.load(cluster)
    if record is None or record.joined:
        raise JoinError(f"no control plane of cluster {cluster!r} runs on this machine")
    return record


def _with_client(record, work):
    async def run():
        client = cluster_cli.admin_client(record)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(run())


def token_list(cluster: str, out=sys.stdout) -> int:
    """`pocketkube token list`: the cluster's bootstrap tokens, as `kubeadm token list` prints them."""
    record = _control_plane(cluster)
    secrets = _with_client(record, lambda client: client.list("v1", "secrets", namespace=bootstraptoken.NAMESPACE))
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    for secret in secrets.get("items") or []:
        if secret.get("type") == bootstraptoken.SECRET_TYPE and (row := bootstraptoken.list_row(secret)):
            rows.append(row)
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]  # kubeadm's tabwriter
    for r in rows:
        out.write("".join(cell.ljust(w) for cell, w in zip(r, widths)) + r[-1] + "\n")
    return 0


def token_delete(cluster: str, tokens: list[str], out=sys.stdout) -> int:
    """`pocketkube token delete ID|TOKEN...`: revoke bootstrap tokens (their Secrets), as kubeadm's."""
    from pocketkube.core import errors

    record = _control_plane(cluster)
    for given in tokens:
        token_id = given if re.fullmatch(r"[a-z0-9]{6}", given) else (bootstraptoken.parse(given) or ("",))[0]
        if not token_id:
            raise JoinError('given token didn\'t match pattern "\\\\A([a-z0-9]{6})\\\\.([a-z0-9]{16})\\\\z" or '
                            '"\\\\A([a-z0-9]{6})\\\\z"')  # kubeadm's, as Go's %q prints them
        name = bootstraptoken.secret_name(token_id)
        try:
            _with_client(record, lambda client: client.delete("v1", "secrets", name, namespace=bootstraptoken.NAMESPACE))
        except errors.APIError as error:
            raise JoinError(f'failed to delete bootstrap token "{token_id}": {error.message}') from None
        out.write(f'bootstrap token "{token_id}" deleted\n')
    return 0


def token_create(cluster: str, ttl_seconds: int, description: str, print_join_command: bool, out=sys.stdout) -> int:
    """`pocketkube token create`: a new bootstrap token of the cluster on this machine."""
    record = _control_plane(cluster)
    if print_join_command and not record.advertise_address:
        raise JoinError(f"cluster {cluster!r} was started without --advertise-address: no other machine can reach "
                        "its API server to join")

    token = _with_client(record, lambda client: _create_token(client, ttl_seconds, description))
    if print_join_command:
        with open(os.path.join(record.server_dir, "pki", "ca.crt"), "rb") as f:
            token = join_command(f"https://{record.advertise_address}:{record.port}", token, f.read())
    out.write(token + "\n")
    return 0


# ---- the joining machine's side ---------------------------------------------------------------


@dataclass
class JoinOptions:
    server: str
    token: str
    ca_cert_hash: str = ""
    unsafe_skip_ca_verification: bool = False
    name: str = ""
    data_dir: str | None = None
    public_ip: str = ""  # this machine's address the other machines reach (default: the one toward the server)
    wait: float = 120.0


def _server_address(server: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme != "https" or not parsed.hostname:
        raise JoinError(f"--server must be https://ADDRESS:PORT, not {server!r}")
    return parsed.hostname, parsed.port or 443


def _https_json(url: str, ctx: ssl.SSLContext, token: str = "", method: str = "GET", body: dict | None = None) -> dict:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            status = json.load(exc)
        except ValueError:
            status = {}
        raise JoinError(f"{method} {url}: {exc.code} {status.get('message') or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise JoinError(f"cannot reach the API server at {url}: {getattr(exc, 'reason', exc)}") from None


def discover(opts: JoinOptions) -> bytes:
    """The cluster CA (PEM), from cluster-info, checked against the pinned hash."""
    import yaml

    insecure = insecure_client_context()
    cm = _https_json(f"{opts.server}/api/v1/namespaces/kube-public/configmaps/{CLUSTER_INFO}", insecure)
    try:
        config = yaml.safe_load((cm.get("data") or {})["kubeconfig"])
        ca_pem = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        actual = bootstraptoken.ca_cert_hash(ca_pem)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise JoinError(f"the cluster-info ConfigMap of {opts.server} holds no usable kubeconfig: {exc}") from None
    if not opts.unsafe_skip_ca_verification and actual not in [h.strip() for h in opts.ca_cert_hash.split(",")]:
        raise JoinError(f"cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
                        f"\"{actual}\" are pinned")
    return ca_pem


def tls_bootstrap(opts: JoinOptions, ca_pem: bytes, node_name: str, ca_file: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of `system:node:<node_name>`, from an approved
    CertificateSigningRequest made with the bootstrap token."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])).sign(key, hashes.SHA256()))
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False  # the CA is pinned; the server is reached by the address given
    name = f"node-csr-{secrets.token_hex(8)}"
    base = f"{opts.server}/apis/certificates.k8s.io/v1/certificatesigningrequests"
    _https_json(base, ctx, opts.token, "POST", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                 "signerName": CSR_SIGNER, "usages": ["digital signature", "client auth"]}})
    deadline = time.monotonic() + CSR_WAIT_SECONDS
    while time.monotonic() < deadline:
        csr = _https_json(f"{base}/{name}", ctx, opts.token)
        status = csr.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Denied", "Failed"):
                raise JoinError(f"certificate signing request {name} was {cond['type'].lower()}: {cond.get('message', '')}")
        if status.get("certificate"):
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            return base64.b64decode(status["certificate"]), key_pem
        time.sleep(0.2)
    raise JoinError(f"certificate signing request {name} was not approved and signed within {CSR_WAIT_SECONDS:g}s")


def node_kubeconfig(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict:
    config = cluster_cli.kubeconfig_dict("default-cluster", server, ca_pem, "")
    config["users"] = [{"name": "default-cluster", "user": {
        "client-certificate-data": base64.b64encode(cert_pem).decode(),
        "client-key-data": base64.b64encode(key_pem).decode()}}]
    return config


def free_index(nodes: list[dict], node_name: str, net: network.ClusterNetwork) -> int:
    """The node number for `node_name`: its own if it joined before (its pod range says), else the
    lowest one whose address and pod range no Node holds."""
    import ipaddress

    used = set()
    subnets = list(net.pod_cidr.subnets(new_prefix=24))
    for node in nodes:
        cidr = (node.get("spec") or {}).get("podCIDR")
        index = subnets.index(ipaddress.ip_network(cidr)) if cidr and ipaddress.ip_network(cidr) in subnets else None
        if node["metadata"]["name"] == node_name and index:
            return index
        if index:
            used.add(index)
        for addr in (node.get("status") or {}).get("addresses") or []:
            try:
                ip = ipaddress.ip_address(addr.get("address", ""))
            except ValueError:
                continue
            if ip in net.node_subnet:
                used.add(int(ip) - int(net.node_subnet.network_address) - 1)
    for index in range(1, network.MAX_NODES + 1):
        if index not in used:
            return index
    raise JoinError(f"the cluster has no free node number left (at most {network.MAX_NODES} nodes)")


def _source_address(server_ip: str) -> str:
    """The address this machine sends from toward `server_ip` (a route look-up, no traffic)."""
    cp = subprocess.run(["ip", "-j", "route", "get", server_ip], capture_output=True, text=True)
    try:
        return json.loads(cp.stdout)[0]["prefsrc"]
    except (ValueError, IndexError, KeyError):
        raise JoinError(f"this machine has no route to {server_ip}; give its address with --public-ip") from None


def forward_table(local: str, host_ip: str, port: int, server_ip: str, server_port: int,
                  ranges: tuple[str, ...]) -> str:
    """nftables: what the machine's nodes send to the bridge address's API port goes to the API
    server (and what the machine sends there itself), leaving from the machine's own address."""
    return "\n".join([
        f"table ip pk-{local}-join {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        f"    ip daddr {host_ip} tcp dport {port} dnat to {server_ip}:{server_port}",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        f"    ip daddr {host_ip} tcp dport {port} dnat to {server_ip}:{server_port}",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f"    ip saddr {{ {', '.join(ranges)} }} ip daddr {server_ip} tcp dport {server_port} masquerade",
        "  }",
        "}", ""])


def join(opts: JoinOptions, out=sys.stdout) -> int:
    """`pocketkube join`: returns the exit code; raises JoinError (or ValueError, NetworkError)."""
    import ipaddress

    started = time.monotonic()
    cluster_cli.require_root("join")
    cluster_cli.require_pause_program("join")
    node_name = opts.name or socket.gethostname().split(".")[0].lower()
    names.validate_cluster_name(node_name)
    if not bootstraptoken.parse(opts.token):
        raise JoinError(f"the bootstrap token {opts.token!r} was not of the form {bootstraptoken.TOKEN_RE.pattern!r}")
    if not opts.ca_cert_hash and not opts.unsafe_skip_ca_verification:
        raise JoinError("give --discovery-token-ca-cert-hash (printed by `pocketkube up` and `pocketkube token create "
                        "--print-join-command`) or --discovery-token-unsafe-skip-ca-verification")
    server_host, server_port = _server_address(opts.server)
    try:
        server_ip = str(ipaddress.ip_address(server_host))
    except ValueError:
        server_ip = socket.gethostbyname(server_host)
    progress = cluster_cli.Progress(out)
    with cluster_cli.machine_lock():
        existing = cluster_cli.ClusterRecord.load(node_name)
        if existing and (cluster_cli.cluster_processes(existing) or cluster_cli.supervisor_pid(existing)):
            raise JoinError(f"{node_name!r} already runs on this machine; `pocketkube down --name {node_name}` first")
        if cluster_cli.leftovers(node_name):
            cluster_cli.teardown(node_name, kubeconfig=None)
        progress.show(f"Checking the cluster CA of {opts.server}")
        ca_pem = discover(opts)
        progress.done()
        data_dir = os.path.abspath(opts.data_dir or cluster_cli.default_data_dir(node_name))
        # recorded at once (a plain record until the node is placed), so a failure is cleaned up
        record = cluster_cli.ClusterRecord(node_name, data_dir, 1, server_port)
        cluster_cli.prepare_data_dir(record)
        record.save()
        try:
            return _join(opts, record, node_name, ca_pem, server_ip, progress, out, started)
        except BaseException:
            if progress.text:
                progress.fail()
            cluster_cli.teardown(node_name, kubeconfig=None)
            raise


def _join(opts: JoinOptions, record, node_name: str, ca_pem: bytes, server_ip: str, progress, out,
          started: float) -> int:
    """`join` once the CA is trusted and the data dir is ready: steps 2 to 4 of the module docstring."""
    import yaml

    os.makedirs(record.server_dir, mode=0o700, exist_ok=True)  # this machine's copy of the CA
    ca_file = os.path.join(record.server_dir, "ca.crt")
    supervisor.write_file(ca_file, ca_pem.decode())
    progress.show(f"Requesting a client certificate for system:node:{node_name}")
    cert_pem, key_pem = tls_bootstrap(opts, ca_pem, node_name, ca_file)
    progress.done()
    direct = os.path.join(record.server_dir, "kubeconfig")  # the machine's own: straight to the server
    supervisor.write_file(direct, yaml.safe_dump(node_kubeconfig(opts.server, ca_pem, cert_pem, key_pem),
                                                 sort_keys=False), private=True)
    config, nodes, kubelet_token = asyncio.run(_read_cluster(direct))
    net = network.ClusterNetwork(node_name, network.MAX_NODES, node_subnet=_net(config["nodeSubnet"]),
                                 pod_cidr=_net(config["podCIDR"]), service_cidr=_net(config["serviceCIDR"]),
                                 lb_range=config["lbRange"])
    index = free_index(nodes, node_name, net)
    record.joined, record.nodes, record.node_index = opts.server, index, index
    record.node_name = node_name
    record.node_subnet, record.pod_cidr, record.service_cidr = (config["nodeSubnet"], config["podCIDR"],
                                                               config["serviceCIDR"])
    record.lb_range = net.lb_range
    record.advertise_address = opts.public_ip or _source_address(server_ip)
    record.save()
    net = record.network
    node = net.node(index)
    progress.show(f"Creating node network (node {index}: {node.ip}, pods {node.pod_cidr})")
    network.create_network(net)
    table = forward_table(record.name, net.host_ip, record.port, server_ip, record.port,
                          (str(net.node_subnet), str(net.pod_cidr)))
    cp = subprocess.run(["nft", "-f", "-"], input=table, capture_output=True, text=True)
    if cp.returncode != 0:
        raise JoinError(f"nft -f failed: {cp.stderr.strip()}")
    progress.done()
    state_dir = record.node_dir(node)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    kubeconfig = os.path.join(state_dir, "kubeconfig")  # the agent's: through the bridge address
    supervisor.write_file(kubeconfig, yaml.safe_dump(node_kubeconfig(
        f"https://{net.host_ip}:{record.port}", ca_pem, cert_pem, key_pem), sort_keys=False), private=True)
    stream_token_file = os.path.join(record.server_dir, "kubelet-client-token")
    supervisor.write_file(stream_token_file, kubelet_token + "\n", private=True)
    processes = [
        {"name": f"agent-{node.name}", "log": record.agent_log(node), "netns": node.netns, "argv": [
            *cluster_cli.AGENT_COMMAND, "--kubeconfig", kubeconfig, "--node-name", node_name, "--node-ip", node.ip,
            "--pod-cidr", node.pod_cidr, "--cluster-dns", net.cluster_dns, "--state-dir", state_dir,
            "--netns", node.netns,
            "--stream-token-file", stream_token_file]},
        overlay_process(record, direct, [(node_name, node.netns, node.pod_cidr, node.ip)])]
    cluster_cli.start_supervisor(record, processes)
    progress.show("Waiting for the node to be Ready")
    asyncio.run(_wait_ready(direct, node_name, opts.wait, record))
    progress.done()
    out.write(f"This node has joined the cluster in {time.monotonic() - started:.1f}s: node {node_name} "
              f"({node.ip}, pods {node.pod_cidr}), API server {opts.server}\n"
              f"Run 'kubectl get nodes' on the control plane to see this node join the cluster.\n"
              f"Leave with `pocketkube down --name {node_name}`.\n")
    return 0


def overlay_process(record, kubeconfig: str, nodes: list[tuple[str, str, str]]) -> dict:
    """The supervisor's entry for this machine's overlay (nodes: name, netns, pod CIDR, address)."""
    argv = [*OVERLAY_COMMAND, "--kubeconfig", kubeconfig, "--cluster-name", record.name,
            "--public-ip", record.advertise_address, "--host-ip", record.network.host_ip]
    for node in nodes:
        argv += ["--node", ",".join(node)]
    return {"name": "overlay", "log": os.path.join(record.data_dir, "overlay.log"), "netns": None, "argv": argv}


def _net(text: str):
    import ipaddress

    return ipaddress.IPv4Network(text)


async def _read_cluster(kubeconfig: str) -> tuple[dict, list[dict], str]:
    from pocketkube.core.client import from_kubeconfig

    client = from_kubeconfig(kubeconfig, field_manager="kubelet")
    try:
        cm = await client.get("v1", "configmaps", NETWORK_CONFIGMAP, namespace="kube-system")
        nodes = (await client.list("v1", "nodes")).get("items") or []
        secret = await client.get("v1", "secrets", KUBELET_CLIENT_SECRET, namespace="kube-system")
        return cm.get("data") or {}, nodes, base64.b64decode(secret["data"]["token"]).decode()
    finally:
        await client.close()


async def _wait_ready(kubeconfig: str, node_name: str, timeout: float, record) -> None:
    from pocketkube.core import errors
    from pocketkube.core.client import from_kubeconfig

    client = from_kubeconfig(kubeconfig, field_manager="kubelet")
    deadline = time.monotonic() + timeout
    try:
        while True:
            cluster_cli.check_processes(record)
            try:
                if cluster_cli.node_ready(await client.get("v1", "nodes", node_name)):
                    return
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
            if time.monotonic() > deadline:
                raise JoinError(f"node {node_name} was not Ready within {timeout:g}s; see {record.data_dir}")
            await asyncio.sleep(0.2)
    finally:
        await client.close()


# ---- command line -----------------------------------------------------------------------------


def _duration(text: str) -> int:
    """Seconds of a Go-style duration (24h0m0s, 2h, 30m, 0 = never expires)."""
    import re

    if text in ("0", "0s"):
        return 0
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        import argparse

        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 24h0m0s, 2h, 30m)")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def add_parsers(sub) -> None:
    p = sub.add_parser("join", help="start a node on this machine and join it to a cluster on another machine",
                       **examples("pocketkube join --server https://192.168.1.10:6443 --token abcdef.0123456789abcdef \\",
                                  "    --discovery-token-ca-cert-hash sha256:1234...cdef --name worker-1",
                                  "pocketkube down --name worker-1           # leave: stop the node, remove what it made"))
    p.add_argument("--server", required=True, metavar="https://ADDRESS:PORT",
                   help="the API server (`pocketkube up --advertise-address` prints it)")
    p.add_argument("--token", required=True, help="a bootstrap token (`pocketkube token create`)")
    p.add_argument("--discovery-token-ca-cert-hash", default="", metavar="sha256:HEX",
                   help="the SHA-256 of the cluster CA's public key: the server is trusted only if it matches")
    p.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true",
                   help="trust the server's CA without checking it against a hash")
    p.add_argument("--name", default="", help="the node's name (default: this machine's host name); also names "
                                              "what the join makes on this machine")
    p.add_argument("--data-dir", help=f"where the node's data lives (default {cluster_cli.DATA_ROOT}/NAME)")
    p.add_argument("--public-ip", default="", help="this machine's address the other machines reach "
                                                   "(default: its address toward the server)")
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for the node to be Ready (default %(default)s)")
    p.set_defaults(func=cluster_cli._cli(lambda a: join(JoinOptions(
        a.server, a.token, a.discovery_token_ca_cert_hash, a.discovery_token_unsafe_skip_ca_verification, a.name,
        a.data_dir, a.public_ip, a.wait))))
    t = sub.add_parser("token", help="manage bootstrap tokens (what `pocketkube join` authenticates with)")
    tsub = t.add_subparsers(dest="token_command", required=True)
    c = tsub.add_parser("create", help="create a bootstrap token", **examples(
        "pocketkube token create --print-join-command",
        "pocketkube token create --ttl 2h"))
    c.add_argument("--name", default=names.DEFAULT_NAME, help="cluster name (default %(default)s)")
    c.add_argument("--ttl", type=_duration, default=bootstraptoken.DEFAULT_TTL_SECONDS, metavar="DURATION",
                   help="how long the token is valid, e.g. 24h0m0s (default 24h; 0: never expires)")
    c.add_argument("--description", default="", help="a human-friendly description of the token")
    c.add_argument("--print-join-command", action="store_true",
                   help="print the whole `pocketkube join` command, not only the token")
    c.set_defaults(func=cluster_cli._cli(lambda a: token_create(a.name, a.ttl, a.description,
                                                                       a.print_join_command)))
    ls = tsub.add_parser("list", help="list the bootstrap tokens", **examples("pocketkube token list"))
    ls.add_argument("--name", default=names.DEFAULT_NAME, help="cluster name (default %(default)s)")
    ls.set_defaults(func=cluster_cli._cli(lambda a: token_list(a.name)))
    d = tsub.add_parser("delete", help="delete (revoke) bootstrap tokens", **examples(
        "pocketkube token delete abcdef", "pocketkube token delete abcdef.0123456789abcdef"))
    d.add_argument("--name", default=names.DEFAULT_NAME, help="cluster name (default %(default)s)")
    d.add_argument("tokens", nargs="+", metavar="TOKEN", help="a token ID ([a-z0-9]{6}) or a whole token")
    d.set_defaults(func=cluster_cli._cli(lambda a: token_delete(a.name, a.tokens)))
