"""The pause image (registry.k8s.io/pause): a process that sleeps until it is stopped."""

from __future__ import annotations

import shutil

from pocketkube.node.images import ImageConfig, ImageContext, file_size

NAMES = ("registry.k8s.io/pause", "k8s.gcr.io/pause", "gcr.io/google_containers/pause",
         "rancher/mirrored-pause")
HEADLINE = ("registry.k8s.io/pause",)


def image_config(ctx: ImageContext) -> ImageConfig:
    sleep = shutil.which("sleep") or "/usr/bin/sleep"
    return ImageConfig(entrypoint=["/pause"], programs={"/pause": [sleep, "infinity"]},
                       size=file_size(sleep))
