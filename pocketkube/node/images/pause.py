"""The pause image (registry.k8s.io/pause): a process that sleeps until it is stopped."""

from __future__ import annotations

import shutil

from pocketkube.node.images import ImageConfig, ImageContext, file_size

NAMES = ("registry.k8s.io/pause", "k8s.gcr.io/pause", "gcr.io/google_containers/pause",
         "rancher/mirrored-pause")
HEADLINE = ("registry.k8s.io/pause",)


def image_config(ctx: ImageContext) -> ImageConfig:
    """The real pause exits on SIGTERM even as PID 1; a shell that traps it does the same."""
    sh = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
    sleep = shutil.which("sleep", path="/usr/bin:/bin") or "/bin/sleep"
    return ImageConfig(entrypoint=["/pause"],
                       programs={"/pause": [sh, "-c",
                                            f'trap "exit 0" TERM INT; while :; do {sleep} 3600 & wait $!; done']},
                       holds=[sh, sleep], user="65535:65535", size=file_size(sh))
