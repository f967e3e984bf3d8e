"""The system images: kube-proxy and CoreDNS run pocketkube's own proxy and DNS server;
ingress-nginx's kube-webhook-certgen runs `pocketkube webhook-certgen` (its `create` and
`patch` with the image's own arguments).

The add-on manifests (pocketkube/addons) use the real image names, as kubeadm and kind do,
with arguments for pocketkube's implementations.
"""

from __future__ import annotations

from pocketkube.node.images import ImageConfig, ImageContext

CERTGEN = ("registry.k8s.io/ingress-nginx/kube-webhook-certgen", "k8s.gcr.io/ingress-nginx/kube-webhook-certgen",
           "jettech/kube-webhook-certgen")
NAMES = ("registry.k8s.io/kube-proxy", "k8s.gcr.io/kube-proxy",
         "registry.k8s.io/coredns/coredns", "coredns/coredns", "k8s.gcr.io/coredns/coredns") + CERTGEN
HEADLINE = ("registry.k8s.io/kube-proxy", "registry.k8s.io/coredns/coredns", CERTGEN[0])

_ENTRYPOINTS = {"kube-proxy": ("/usr/local/bin/kube-proxy", "proxy"), "coredns": ("/coredns", "dns"),
                "certgen": ("/kube-webhook-certgen", "webhook-certgen")}


def image_config(ctx: ImageContext) -> ImageConfig:
    which = ("kube-proxy" if ctx.ref.name.endswith("kube-proxy") else
             "certgen" if ctx.ref.name in CERTGEN else "coredns")
    program, command = _ENTRYPOINTS[which]
    return ImageConfig(entrypoint=[program],
                       programs={program: [ctx.python, "-m", "pocketkube.cli.main", command]})
