"""The ingress-nginx images.

- The controller: pocketkube's Ingress controller (pocketkube/ingress) with Debian's nginx as
  its data plane, laid out as the upstream image: ENTRYPOINT `/usr/bin/dumb-init --`, the
  controller at `/nginx-ingress-controller` taking the upstream flags, nginx at
  /usr/sbin/nginx, and /etc/nginx the container's own writable directory (the controller
  writes nginx.conf and the certificates there, as upstream's does). It runs as upstream's
  user, www-data (uid 101, gid 82), who owns /etc/nginx; nginx binds 80 and 443 as that user
  because the pod's network namespace lets any user bind low ports, as containerd sets it. The
  preStop hook `/wait-shutdown` is a file of the image (the kubelet's SIGTERM that follows the
  hook stops the controller, so the hook has nothing left to do).
- kube-webhook-certgen (the install manifests' two Jobs): `create` and `patch`, as
  pocketkube/ingress/certgen.py implements them, as the distroless image's nonroot user.
"""

from __future__ import annotations

import os

from pocketkube.node.images import DEFAULT_PATH, ImageConfig, ImageContext, file_size, python_holds, translate

CONTROLLER_IMAGES = ("registry.k8s.io/ingress-nginx/controller", "k8s.gcr.io/ingress-nginx/controller",
                     "registry.k8s.io/ingress-nginx/controller-chroot")
CERTGEN_IMAGES = ("registry.k8s.io/ingress-nginx/kube-webhook-certgen", "k8s.gcr.io/ingress-nginx/kube-webhook-certgen",
                  "docker.io/jettech/kube-webhook-certgen", "jettech/kube-webhook-certgen")
NAMES = CONTROLLER_IMAGES + CERTGEN_IMAGES
HEADLINE = ("registry.k8s.io/ingress-nginx/controller", "registry.k8s.io/ingress-nginx/kube-webhook-certgen")
CONTROLLER = "/nginx-ingress-controller"
DUMB_INIT = "/usr/bin/dumb-init"
NGINX = "/usr/sbin/nginx"
WWW_DATA = (101, 82)
USERS = ["www-data:x:101:82:Linux User,,,:/home/www-data:/sbin/nologin"]
GROUPS = ["www-data:x:82:www-data"]
NONROOT_USERS = ["nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"]
NONROOT_GROUPS = ["nonroot:x:65532:"]


def image_config(ctx: ImageContext) -> ImageConfig:
    if ctx.ref.name in CERTGEN_IMAGES:
        run = [ctx.python, "-m", "pocketkube.ingress.certgen"]
        return ImageConfig(entrypoint=["/kube-webhook-certgen"], programs={"/kube-webhook-certgen": run},
                           env={"PATH": DEFAULT_PATH}, holds=python_holds(ctx), users=NONROOT_USERS,
                           groups=NONROOT_GROUPS, user="65532")
    controller = [ctx.python, "-m", "pocketkube.cli.main", "ingress-controller"]
    programs = {DUMB_INIT: [], CONTROLLER: controller, "nginx": [NGINX]}
    etc_nginx = os.path.join(ctx.run_dir, "etc-nginx")
    os.makedirs(etc_nginx, exist_ok=True)
    os.chown(etc_nginx, *WWW_DATA)  # the image's /etc/nginx belongs to www-data
    wait_shutdown = os.path.join(ctx.run_dir, "wait-shutdown")
    files = {wait_shutdown: f"#!{ctx.python}\n".encode()}  # a Python script that does nothing

    def dumb_init(argv: list[str]) -> list[str]:
        """dumb-init runs its arguments (after `--`) as the child it supervises."""
        if argv[:1] == ["--"]:
            argv = argv[1:]
        return translate(argv, programs)

    return ImageConfig(entrypoint=[DUMB_INIT, "--"], cmd=[CONTROLLER], programs=programs,
                       env={"PATH": DEFAULT_PATH}, files=files,
                       mounts={"/etc/nginx": etc_nginx, "/wait-shutdown": wait_shutdown}, entry_script=dumb_init,
                       holds=python_holds(ctx) + [NGINX], users=USERS, groups=GROUPS, user="101",
                       size=file_size(NGINX))
