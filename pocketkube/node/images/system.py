"""The system images: kube-proxy and CoreDNS run pocketkube's own proxy and DNS server.

The add-on manifests (pocketkube/addons) use the real image names, as kubeadm and kind do,
with arguments for pocketkube's implementations.
"""

from __future__ import annotations

from pocketkube.node.images import ImageConfig, ImageContext

NAMES = ("registry.k8s.io/kube-proxy", "k8s.gcr.io/kube-proxy",
         "registry.k8s.io/coredns/coredns", "coredns/coredns", "k8s.gcr.io/coredns/coredns")
HEADLINE = ("registry.k8s.io/kube-proxy", "registry.k8s.io/coredns/coredns")

_ENTRYPOINTS = {"kube-proxy": ("/usr/local/bin/kube-proxy", "proxy"), "coredns": ("/coredns", "dns")}


def image_config(ctx: ImageContext) -> ImageConfig:
    program, command = _ENTRYPOINTS["kube-proxy" if ctx.ref.name.endswith("kube-proxy") else "coredns"]
    return ImageConfig(entrypoint=[program],
                       programs={program: [ctx.python, "-m", "pocketkube.cli.main", command]})
