"""The pause image (registry.k8s.io/pause): a process that waits until it is stopped."""

from __future__ import annotations

import shutil

from pocketkube.node.images import ImageConfig, ImageContext, file_size
from pocketkube.node.sandbox import PAUSE_PROGRAM

NAMES = ("registry.k8s.io/pause", "k8s.gcr.io/pause", "gcr.io/google_containers/pause",
         "rancher/mirrored-pause")
HEADLINE = ("registry.k8s.io/pause",)


def image_config(ctx: ImageContext) -> ImageConfig:
    """/pause is this machine's `catatonit -P` (static, one process): like the real pause it
    waits, reaps what it is given, and exits 0 on SIGTERM or SIGINT even as PID 1."""
    pause = shutil.which(PAUSE_PROGRAM, path="/usr/bin:/bin") or f"/usr/bin/{PAUSE_PROGRAM}"
    return ImageConfig(entrypoint=["/pause"], programs={"/pause": [pause, "-P"]}, holds=[pause],
                       user="65535:65535", size=file_size(pause))
