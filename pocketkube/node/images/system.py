"""The system images: kube-proxy and CoreDNS run pocketkube's own proxy and DNS server.

The add-on manifests (pocketkube/addons) use the real image names, as kubeadm and kind do,
with arguments for pocketkube's implementations. The images hold the Python interpreter, the
virtual env and the pocketkube package (read-only), and kube-proxy's the programs it runs
(nft, conntrack, ip).
CoreDNS runs as nonroot (65532), as its distroless image does; kube-proxy as root.
"""

from __future__ import annotations

import shutil

from pocketkube.node.images import DEFAULT_PATH, ImageConfig, ImageContext, python_holds

NAMES = ("registry.k8s.io/kube-proxy", "k8s.gcr.io/kube-proxy",
         "registry.k8s.io/coredns/coredns", "coredns/coredns", "k8s.gcr.io/coredns/coredns")
HEADLINE = ("registry.k8s.io/kube-proxy", "registry.k8s.io/coredns/coredns")

NONROOT_USER = "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"
NONROOT_GROUP = "nonroot:x:65532:"
PROXY_TOOLS = ("nft", "conntrack", "ip")  # what the proxy runs (nftables and userspace modes)
_ENTRYPOINTS = {"kube-proxy": ("/usr/local/bin/kube-proxy", "proxy"), "coredns": ("/coredns", "dns")}


def image_config(ctx: ImageContext) -> ImageConfig:
    program, command = _ENTRYPOINTS["kube-proxy" if ctx.ref.name.endswith("kube-proxy") else "coredns"]
    tools = [shutil.which(name, path=DEFAULT_PATH) for name in PROXY_TOOLS] if command == "proxy" else []
    holds = python_holds(ctx) + [path for path in tools if path]
    nonroot = command == "dns"  # coredns' image is distroless and runs as nonroot (65532), kube-proxy's as root
    return ImageConfig(entrypoint=[program], holds=holds,
                       programs={program: [ctx.python, "-m", "pocketkube.cli.main", command]},
                       users=[NONROOT_USER] if nonroot else [], groups=[NONROOT_GROUP] if nonroot else [],
                       user="65532" if nonroot else "0")
