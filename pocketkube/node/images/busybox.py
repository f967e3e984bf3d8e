"""Shell images: busybox and alpine (Debian's busybox applets), curl, debian and ubuntu, and
the e2e suite's jessie-dnsutils (a Debian with dig and nslookup: this machine's bash and dnsutils).

For busybox-based images the pod's /bin is a node-wide directory where every busybox applet
(sh, wget, nslookup, ping, ...) is a link to Debian's busybox, which the image holds, and PATH
starts with /bin: `wget`, `nslookup` or `sh` inside the container are busybox's, with busybox's
output, as in the real images (pkill and pgrep, which Debian's busybox lacks, are procps's).
Programs an image adds over the applets (agnhost's nc, dig, ...)
are links to this machine's programs, which the image then holds (`bin_dir_holds`).
debian, ubuntu and jessie-dnsutils hold this machine's whole /usr.

One exception: Debian builds busybox without wget's `-T SEC` (network timeout) and its wget
crashes (SIGSEGV) when given one, while the real busybox image has it and every book and test
writes `wget -T 2 ...`. So the pods' `wget` is a small busybox-sh wrapper that takes `-T SEC`
off the command line and runs busybox's wget under `timeout SEC`: the limit covers the whole
transfer rather than each read, and ends as busybox does ("wget: download timed out", exit 1).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pocketkube.node.images import DEFAULT_PATH, DISTRO_HOLDS, ImageConfig, ImageContext, file_size

BUSYBOX_IMAGES = ("busybox", "alpine", "radial/busyboxplus", "curlimages/curl")
JESSIE_DNSUTILS = ("gcr.io/kubernetes-e2e-test-images/jessie-dnsutils", "k8s.gcr.io/e2e-test-images/jessie-dnsutils",
                   "registry.k8s.io/e2e-test-images/jessie-dnsutils")
HOST_SHELL_IMAGES = ("debian", "ubuntu") + JESSIE_DNSUTILS
NAMES = BUSYBOX_IMAGES + HOST_SHELL_IMAGES
HEADLINE = ("busybox", "alpine", "curlimages/curl", "debian", "ubuntu")
BUSYBOX_PATH = "/bin:" + DEFAULT_PATH.removesuffix(":/bin")
# applets of the real busybox image that Debian's build lacks: procps's programs stand in
BUSYBOX_EXTRAS = ("pkill", "pgrep")


def busybox_binary() -> str | None:
    return shutil.which("busybox", path="/usr/bin:/bin:/usr/sbin:/sbin")


def applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10, check=True)
    return [name for name in out.stdout.split() if name and "/" not in name]


WGET_WRAPPER = """#!{busybox} sh
# pocketkube: busybox's wget with -T SEC, which Debian's build lacks (see images/busybox.py).
timeout=
count=$#
while [ "$count" -gt 0 ]; do
  arg=$1; shift; count=$((count - 1))
  case $arg in
    -T) timeout=$1; shift; count=$((count - 1)); continue ;;
    -T*) timeout=${{arg#-T}}; continue ;;
  esac
  set -- "$@" "$arg"
done
[ -n "$timeout" ] || exec {busybox} wget "$@"
{busybox} timeout -s INT "$timeout" {busybox} wget "$@"  # INT: the shell reports no "Terminated"
code=$?
[ "$code" -eq 130 ] && {{ echo "wget: download timed out" >&2; exit 1; }}
exit "$code"
"""


def _replace_link(link: str, target: str) -> None:
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def real_program(entry: str) -> str | None:
    """This machine's program behind an entry of `ensure_bin_dir`'s `real` (`nc=nc.openbsd`, `dig`)."""
    name, _, program = entry.partition("=")
    return shutil.which(program or name, path=DEFAULT_PATH)


def bin_dir_holds(real: tuple[str, ...] = ()) -> list[str]:
    """What a busybox-based image holds: busybox, and the programs `real` links to."""
    found = [busybox_binary() or "/usr/bin/busybox"] + [real_program(entry) for entry in (*BUSYBOX_EXTRAS, *real)]
    return [path for path in found if path]


def ensure_bin_dir(cache_dir: str, real: tuple[str, ...] = ()) -> str:
    """The node-wide applet directory mounted as a busybox pod's /bin (built once). `real`
    names programs an image installs over busybox's applets (alpine's `apk add`): each links
    to this machine's program (`nc=nc.openbsd`: `nc` is netcat-openbsd's, `dig`: dig's); the
    image holds them (`bin_dir_holds`)."""
    suffix = ("-" + "-".join(sorted(real)).replace("=", "_")) if real else ""
    bin_dir = os.path.join(cache_dir, f"busybox-bin.4{suffix}")  # .4: applets and extras, not /usr/bin
    if os.path.isdir(bin_dir):
        return bin_dir
    busybox = busybox_binary()
    if busybox is None:
        raise FileNotFoundError("busybox is not installed (apt-get install busybox)")
    building = f"{bin_dir}.{os.getpid()}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    for name in applets(busybox):
        _replace_link(os.path.join(building, name), busybox)
    wget = os.path.join(building, "wget")
    if os.path.lexists(wget):
        os.unlink(wget)
    with open(wget, "w") as f:
        f.write(WGET_WRAPPER.format(busybox=busybox))
    os.chmod(wget, 0o755)
    for entry in (*BUSYBOX_EXTRAS, *real):
        path = real_program(entry)
        if path:
            _replace_link(os.path.join(building, entry.partition("=")[0]), path)
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
        return ImageConfig(cmd=["bash"], env={"PATH": DEFAULT_PATH}, holds=list(DISTRO_HOLDS),
                           size=file_size("/usr/bin/bash"))
    busybox = busybox_binary() or "/usr/bin/busybox"
    real = ("curl",) if name in ("curlimages/curl", "radial/busyboxplus") else ()
    config = ImageConfig(cmd=["sh"], env={"PATH": BUSYBOX_PATH}, mounts={"/bin": ensure_bin_dir(ctx.cache_dir, real)},
                         holds=bin_dir_holds(real), size=file_size(busybox))
    if name == "curlimages/curl":
        config.entrypoint = ["/entrypoint.sh"]
        config.cmd = ["curl"]
        config.programs = {"/entrypoint.sh": []}
        config.entry_script = curl_entrypoint
    return config
