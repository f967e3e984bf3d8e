"""The ingress-nginx images.

- The controller: pocketkube's Ingress controller (pocketkube/ingress) with Debian's nginx as
  its data plane, laid out as the upstream image: ENTRYPOINT `/usr/bin/dumb-init --`, the
  controller at `/nginx-ingress-controller` taking the upstream flags, nginx at
  /usr/sbin/nginx, and /etc/nginx the container's own writable directory (the controller
  writes nginx.conf and the certificates there, as upstream's does).
- kube-webhook-certgen (the install manifests' two Jobs): `create` and `patch`, as
  pocketkube/ingress/certgen.py implements them.
"""

from __future__ import annotations

import os

from pocketkube.node.images import DEFAULT_PATH, ImageConfig, ImageContext, file_size, translate

CONTROLLER_IMAGES = ("registry.k8s.io/ingress-nginx/controller", "k8s.gcr.io/ingress-nginx/controller",
                     "registry.k8s.io/ingress-nginx/controller-chroot")
CERTGEN_IMAGES = ("registry.k8s.io/ingress-nginx/kube-webhook-certgen", "k8s.gcr.io/ingress-nginx/kube-webhook-certgen",
                  "docker.io/jettech/kube-webhook-certgen", "jettech/kube-webhook-certgen")
NAMES = CONTROLLER_IMAGES + CERTGEN_IMAGES
HEADLINE = ("registry.k8s.io/ingress-nginx/controller", "registry.k8s.io/ingress-nginx/kube-webhook-certgen")
CONTROLLER = "/nginx-ingress-controller"
DUMB_INIT = "/usr/bin/dumb-init"


def image_config(ctx: ImageContext) -> ImageConfig:
    if ctx.ref.name in CERTGEN_IMAGES:
        run = [ctx.python, "-m", "pocketkube.ingress.certgen"]
        return ImageConfig(entrypoint=["/kube-webhook-certgen"], programs={"/kube-webhook-certgen": run},
                           env={"PATH": DEFAULT_PATH})
    controller = [ctx.python, "-m", "pocketkube.cli.main", "ingress-controller"]
    # /wait-shutdown (the manifests' preStop hook) asks the controller to stop and waits; here the
    # kubelet's SIGTERM that follows does the same, so the hook has nothing left to do
    programs = {DUMB_INIT: [], CONTROLLER: controller, "nginx": ["/usr/sbin/nginx"],
                "/wait-shutdown": [ctx.python, "-c", "pass"]}
    etc_nginx = os.path.join(ctx.run_dir, "etc-nginx")
    os.makedirs(etc_nginx, exist_ok=True)

    def dumb_init(argv: list[str]) -> list[str]:
        """dumb-init runs its arguments (after `--`) as the child it supervises."""
        if argv[:1] == ["--"]:
            argv = argv[1:]
        return translate(argv, programs)

    return ImageConfig(entrypoint=[DUMB_INIT, "--"], cmd=[CONTROLLER], programs=programs,
                       env={"PATH": DEFAULT_PATH}, mounts={"/etc/nginx": etc_nginx}, entry_script=dumb_init,
                       size=file_size("/usr/sbin/nginx"))
