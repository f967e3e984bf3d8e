"""Shell images: busybox and alpine (Debian's busybox applets), curl, debian and ubuntu.

For busybox-based images the pod's /bin is a node-wide directory where every busybox applet
(sh, wget, nslookup, ping, ...) is a link to Debian's busybox and every other program of
/usr/bin is a link to itself, and PATH starts with /bin: `wget`, `nslookup` or `sh` inside the
container are busybox's, with busybox's output, as in the real images.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pocketkube.node.images import DEFAULT_PATH, ImageConfig, ImageContext, file_size

BUSYBOX_IMAGES = ("busybox", "alpine", "radial/busyboxplus", "curlimages/curl")
HOST_SHELL_IMAGES = ("debian", "ubuntu")
NAMES = BUSYBOX_IMAGES + HOST_SHELL_IMAGES
HEADLINE = ("busybox", "alpine", "curlimages/curl", "debian", "ubuntu")
BUSYBOX_PATH = "/bin:" + DEFAULT_PATH.removesuffix(":/bin")


def busybox_binary() -> str | None:
    return shutil.which("busybox", path="/usr/bin:/bin:/usr/sbin:/sbin")


def applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10, check=True)
    return [name for name in out.stdout.split() if name and "/" not in name]


def ensure_bin_dir(cache_dir: str) -> str:
    """The node-wide applet directory mounted as a busybox pod's /bin (built once)."""
    bin_dir = os.path.join(cache_dir, "busybox-bin")
    if os.path.isdir(bin_dir):
        return bin_dir
    busybox = busybox_binary()
    if busybox is None:
        raise FileNotFoundError("busybox is not installed (apt-get install busybox)")
    building = f"{bin_dir}.{os.getpid()}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    for name in os.listdir("/usr/bin"):
        os.symlink(os.path.join("/usr/bin", name), os.path.join(building, name))
    for name in applets(busybox):
        link = os.path.join(building, name)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(busybox, link)
    try:
        os.rename(building, bin_dir)
    except OSError:  # another pod built it first
        shutil.rmtree(building, ignore_errors=True)
    return bin_dir


def curl_entrypoint(argv: list[str]) -> list[str]:
    """curlimages/curl's entrypoint script: arguments starting with '-' are curl's."""
    if not argv or argv[0].startswith("-"):
        return ["curl", *argv]
    return argv


def image_config(ctx: ImageContext) -> ImageConfig:
    name = ctx.ref.name
    if name in HOST_SHELL_IMAGES:
        return ImageConfig(cmd=["bash"], env={"PATH": DEFAULT_PATH}, size=file_size("/usr/bin/bash"))
    busybox = busybox_binary() or "/usr/bin/busybox"
    config = ImageConfig(cmd=["sh"], env={"PATH": BUSYBOX_PATH},
                         mounts={"/bin": ensure_bin_dir(ctx.cache_dir)}, size=file_size(busybox))
    if name == "curlimages/curl":
        config.entrypoint = ["/entrypoint.sh"]
        config.cmd = ["curl"]
        config.programs = {"/entrypoint.sh": []}
        config.entry_script = curl_entrypoint
    return config
