"""The built-in image catalog: what a container's `image` runs on this machine.

There is no container runtime and nothing is pulled. A well-known image name maps to a real
program here: Debian's nginx and busybox, or a small bundled Python program in programs/
(webapps.py: the echo servers, kubia, http-echo, httpd; agnhost.py: the e2e suite's agnhost).
Each family lives in its own module and describes its image the way a Dockerfile does
(ENTRYPOINT, CMD, ENV, USER) plus what the image holds. `resolve()` applies Kubernetes' rules
for `command`/`args` over ENTRYPOINT/CMD. An image that is not in the catalog still runs when
the container gives a `command:` (with the programs of this machine's /usr, as a Debian image
would); without one it is an image pull error that lists the catalog, as a real node reports
a missing image.

What an image holds is all a pod sees of this machine (nsinit.py builds the pod's root from
it; docs/adr/0009-pod-root-from-the-image.md says why):

- every image: this machine's shared libraries (/usr/lib, /usr/lib64, with /lib and /lib64 as
  on the machine), a generated /etc (passwd and group from `BASE_USERS` / `BASE_GROUPS` plus
  the image's `users` / `groups`, hosts, resolv.conf, hostname, nsswitch.conf), /tmp, /dev,
  /proc and /sys;
- `holds`: paths of this machine (programs, data directories, config files) that appear
  read-only at the same path in the pod;
- `mounts`: pod path -> a directory or file of the node's (the pod's own copies: nginx.conf,
  the html, busybox's /bin of applets);
- `files`: content the runtime writes before the pod starts (host path -> bytes).

To add a program to an image, add its path to the family's `holds` (and, when the image finds
it through a busybox /bin, to that family's programs list: `ensure_bin_dir(cache, ("nc=nc.openbsd",))`
links /bin/nc to it); its libraries come with /usr/lib. A program that runs pocketkube's
Python (or a bundled program) holds `python_holds()`: the interpreter, the virtual env and the
pocketkube package, read-only. A `command:` naming a program the image does not hold fails as
a container runtime fails (`exec: "x": executable file not found in $PATH`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what every image holds: the shared libraries (ld.so, libc, and what programs dlopen: NSS and
# gconv modules, Python's extension modules), read-only
LIBRARY_DIRS = ("/usr/lib", "/usr/lib64")
# an image of this machine's whole /usr (debian, ubuntu, and images outside the catalog run with `command:`)
# A Debian-based image: this machine's /usr, and /etc/alternatives, where /usr's alternatives
# links lead (/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk), as in a Debian image.
DISTRO_HOLDS = ("/usr", "/etc/alternatives")
# /etc/passwd and /etc/group of every image (busybox's and Debian's base users)
BASE_USERS = ("root:x:0:0:root:/root:/bin/sh", "daemon:x:1:1:daemon:/usr/sbin:/bin/false",
              "bin:x:2:2:bin:/bin:/bin/false", "sys:x:3:3:sys:/dev:/bin/false",
              "www-data:x:33:33:www-data:/var/www:/bin/false", "nobody:x:65534:65534:nobody:/nonexistent:/bin/false")
BASE_GROUPS = ("root:x:0:", "daemon:x:1:", "bin:x:2:", "sys:x:3:", "adm:x:4:", "tty:x:5:", "www-data:x:33:",
               "nogroup:x:65534:")
PROGRAMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


class ImageNotFound(Exception):
    """The image is not in the catalog and the container has no command (ErrImagePull).
    `message` is the container's waiting message, `cause` what the pull event reports."""

    def __init__(self, image: str, cause: str):
        self.message = f'failed to pull image "{image}": {cause}'
        self.cause = cause
        super().__init__(self.message)


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference, normalized as Docker does (docker.io/library/...)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The catalog key: `nginx`, `luksa/kubia`, `registry.k8s.io/pause`."""
        if self.registry == "docker.io":
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    @property
    def normalized(self) -> str:
        """The reference as containerd reports it in status.containerStatuses[].image."""
        base = f"{self.registry}/{self.repository}"
        if self.digest:
            return f"{base}@{self.digest}"
        return f"{base}:{self.tag or 'latest'}"

    @property
    def effective_tag(self) -> str:
        return self.tag or "latest"


def parse_image(image: str) -> ImageRef:
    """Split `[registry/]repository[:tag][@digest]`; the first path component is a registry
    when it has a dot or a port or is `localhost` (Docker's rule)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = "docker.io", rest
    if registry == "index.docker.io":
        registry = "docker.io"
    if registry == "docker.io" and "/" not in repository:
        repository = "library/" + repository
    return ImageRef(registry, repository.lower(), tag, digest or None)


@dataclass
class ImageContext:
    """What a family needs to build its image for one container."""

    ref: ImageRef
    pod: dict
    container: dict
    run_dir: str      # this container's own directory (config files, per-pod content)
    cache_dir: str    # node-wide directory shared by all pods (busybox applets)
    python: str = sys.executable

    @property
    def pod_name(self) -> str:
        return (self.pod.get("metadata") or {}).get("name", "")


@dataclass
class ImageConfig:
    """An image as its Dockerfile would describe it, plus what the pod must see."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    working_dir: str = "/"
    programs: dict[str, list[str]] = field(default_factory=dict)  # in-image program -> argv here
    files: dict[str, bytes] = field(default_factory=dict)         # host path -> content
    mounts: dict[str, str] = field(default_factory=dict)          # pod path -> host path
    entry_script: Callable[[list[str]], list[str]] | None = None  # what an ENTRYPOINT script does
    holds: list[str] = field(default_factory=list)   # this machine's paths in the image, read-only
    users: list[str] = field(default_factory=list)   # /etc/passwd lines beyond BASE_USERS
    groups: list[str] = field(default_factory=list)  # /etc/group lines beyond BASE_GROUPS
    user: str = "0"   # USER: the uid (or uid:gid, or a name) the image runs as
    size: int = 0


@dataclass
class Resolved:
    """What the runtime starts for one container."""

    image: str                    # normalized reference (status.containerStatuses[].image)
    image_id: str                 # status.containerStatuses[].imageID
    argv: list[str]               # argv[0] is looked up in the container's PATH inside the pod
    env: dict[str, str]           # the image's ENV; the container's env goes over it
    working_dir: str = "/"
    files: dict[str, bytes] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)
    holds: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    user: str = "0"
    size: int = 0
    in_catalog: bool = True


def _families():
    from pocketkube.node.images import agnhost, apps, busybox, ingress, nginx, pause, system

    return (nginx, busybox, apps, agnhost, pause, system, ingress)


def catalog() -> dict:
    """Catalog key -> family module."""
    table = {}
    for family in _families():
        for name in family.NAMES:
            table[name] = family
    return table


def known_images() -> list[str]:
    """The short list shown in pull errors: the main name of each image."""
    return [name for family in _families() for name in family.HEADLINE]


def image_id(ref: ImageRef, salt: str) -> str:
    digest = ref.digest or "sha256:" + hashlib.sha256(f"{ref.name}:{ref.effective_tag}:{salt}".encode()).hexdigest()
    return f"{ref.registry}/{ref.repository}@{digest}"


def not_in_catalog(image: str) -> ImageNotFound:
    return ImageNotFound(image, f'image not in the pocketkube catalog (known: {", ".join(known_images())}); '
                                f'give the container a command: to run a program of this machine')


def kubernetes_argv(entrypoint: list[str], cmd: list[str], command: list | None, args: list | None) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if command:
        return list(command) + list(args or [])
    if args:
        return list(entrypoint) + list(args)
    return list(entrypoint) + list(cmd)


def translate(argv: list[str], programs: dict[str, list[str]]) -> list[str]:
    """Replace an in-image program (`/http-echo`, `nginx`, ...) by what runs it here; a
    program may map to nothing (an entrypoint script that just runs its arguments)."""
    for _ in range(3):
        if not argv or argv[0] not in programs:
            break
        argv = programs[argv[0]] + argv[1:]
    return argv


def resolve(image: str, command: list | None, args: list | None, pod: dict, container: dict, *,
            run_dir: str, cache_dir: str) -> Resolved:
    """Resolve one container's image and command line. Raises ImageNotFound (ErrImagePull)
    for an unknown image without a command. Files to write and pod mounts are only
    described here; the runtime writes and mounts them."""
    ref = parse_image(image.strip())
    family = catalog().get(ref.name)
    if family is None:
        if not command:
            raise not_in_catalog(image)
        return Resolved(image=ref.normalized, image_id=image_id(ref, "command"),
                        argv=list(command) + list(args or []), env={"PATH": DEFAULT_PATH},
                        holds=[*LIBRARY_DIRS, *DISTRO_HOLDS], in_catalog=False)
    ctx = ImageContext(ref=ref, pod=pod, container=container, run_dir=run_dir, cache_dir=cache_dir)
    config = family.image_config(ctx)
    argv = translate(kubernetes_argv(config.entrypoint, config.cmd, command, args), config.programs)
    if config.entry_script is not None:
        argv = config.entry_script(argv)
    if not argv:
        raise ImageNotFound(image, "no command specified")
    return Resolved(image=ref.normalized, image_id=image_id(ref, family.__name__), argv=argv,
                    env=dict(config.env), working_dir=config.working_dir, files=config.files,
                    mounts=config.mounts, holds=list(dict.fromkeys([*LIBRARY_DIRS, *config.holds])),
                    users=config.users, groups=config.groups, user=config.user, size=config.size)


def python_program(ctx: ImageContext, *args: str, program: str = "webapps.py") -> list[str]:
    """argv running a bundled program with the project's interpreter (unbuffered, isolated)."""
    return [ctx.python, "-I", "-u", os.path.join(PROGRAMS_DIR, program), *args]


def python_holds(ctx: ImageContext) -> list[str]:
    """What an image running `ctx.python` holds: the interpreter's installation, the virtual
    env and the pocketkube package (not the rest of the checkout), all read-only."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [sys.base_prefix, sys.prefix, package, os.path.realpath(ctx.python)]
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]


def passwd_file(users: list[str]) -> str:
    """/etc/passwd of an image: the base users, then the image's (a later line for a name wins)."""
    return _account_file(BASE_USERS, users)


def group_file(groups: list[str]) -> str:
    return _account_file(BASE_GROUPS, groups)


def _account_file(base: tuple[str, ...], extra: list[str]) -> str:
    entries: dict[str, str] = {}
    for line in (*base, *extra):
        entries[line.split(":", 1)[0]] = line
    return "".join(line + "\n" for line in entries.values())


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
