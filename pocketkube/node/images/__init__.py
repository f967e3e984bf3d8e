"""The built-in image catalog: what a container's `image` runs on this machine.

There is no container runtime and nothing is pulled. A well-known image name maps to a real
program here: Debian's nginx and busybox, or a small bundled Python program in programs/
(webapps.py: the echo servers, kubia, http-echo, httpd; agnhost.py: the e2e suite's agnhost).
Each family lives in its own module and describes its image the way a Dockerfile does
(ENTRYPOINT, CMD, ENV) plus what the pod must see (files bind-mounted into the pod, busybox
applets as /bin). `resolve()` applies Kubernetes' rules for
`command`/`args` over ENTRYPOINT/CMD. An image that is not in the catalog still runs when the
container gives a `command:` (any program on this machine); without one it is an image pull
error that lists the catalog, as a real node reports a missing image.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
                        in_catalog=False)
    ctx = ImageContext(ref=ref, pod=pod, container=container, run_dir=run_dir, cache_dir=cache_dir)
    config = family.image_config(ctx)
    argv = translate(kubernetes_argv(config.entrypoint, config.cmd, command, args), config.programs)
    if config.entry_script is not None:
        argv = config.entry_script(argv)
    if not argv:
        raise ImageNotFound(image, "no command specified")
    return Resolved(image=ref.normalized, image_id=image_id(ref, family.__name__), argv=argv,
                    env=dict(config.env), working_dir=config.working_dir, files=config.files,
                    mounts=config.mounts, size=config.size)


def python_program(ctx: ImageContext, *args: str, program: str = "webapps.py") -> list[str]:
    """argv running a bundled program with the project's interpreter (unbuffered, isolated)."""
    return [ctx.python, "-I", "-u", os.path.join(PROGRAMS_DIR, program), *args]


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
