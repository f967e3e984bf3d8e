"""A pod's volumes on the node, as the kubelet's volume manager makes them.

`PodVolumes` holds, per volume name, the node's directory (or file) behind it: emptyDir a
directory of the pod on the node's disk (medium Memory: in the pod's state dir, a tmpfs under `up`), configMap / secret / downwardAPI / projected files written with the
kubelet's atomic-writer layout (`write_volume_files`: a timestamped directory behind `..data`),
hostPath the node's path (with its type checks), a persistentVolumeClaim a directory of the
node per claim. Volumes are group-owned by the pod's fsGroup; a projected service-account token
is readable by the pod's user only; token volumes are written again when their token is due
for renewal (`refresh_tokens`). A volume that cannot be set up raises `VolumeError` with the
kubelet's FailedMount message.
"""

from __future__ import annotations

import os
import time

from pocketkube.core.linux import remove_tree
from pocketkube.node import security


class VolumeError(Exception):
    """A volume could not be set up (the kubelet's FailedMount)."""


def write_volume_files(directory: str, files: dict[str, bytes], mode: int) -> None:
    """The kubelet's atomic writer layout: files in a timestamped dir, `..data` pointing to
    it, and one symlink per top-level entry (so updates appear at once)."""
    os.makedirs(directory, exist_ok=True)
    version = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 1_000_000_000:09d}"
    payload = os.path.join(directory, version)
    os.makedirs(payload)
    for rel, data in files.items():
        rel = rel.lstrip("/")
        if not rel or ".." in rel.split("/"):
            continue
        target = os.path.join(payload, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, mode)
    tmp_link = os.path.join(directory, "..data_tmp")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(version, tmp_link)
    os.replace(tmp_link, os.path.join(directory, "..data"))
    tops = {rel.lstrip("/").split("/")[0] for rel in files}
    for top in tops:
        link = os.path.join(directory, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if entry.startswith("..") and entry not in ("..data", version) and os.path.isdir(path) \
                and not os.path.islink(path):
            remove_tree(path)
        elif not entry.startswith("..") and entry not in tops:
            remove_tree(path)


def set_volume_ownership(path: str, fs_group: int, readonly: bool) -> None:
    """fsGroup as the kubelet applies it to a volume (SetVolumeOwnership): every file and
    directory belongs to the group, gets its read (and unless read-only, write) bits, and
    directories the setgid bit, so new files inherit the group."""
    mask = 0o440 if readonly else 0o660
    for root, dirs, files in os.walk(path):
        for name in [None, *files]:
            entry = root if name is None else os.path.join(root, name)
            if os.path.islink(entry):
                continue
            os.chown(entry, -1, fs_group)
            mode = os.stat(entry).st_mode & 0o7777
            if name is None:
                os.chmod(entry, mode | mask | 0o110 | 0o2000)
            else:
                os.chmod(entry, mode | mask)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]


def volume_mode(volume: dict) -> int:
    for kind in ("configMap", "secret", "projected", "downwardAPI"):
        if kind in volume and volume[kind].get("defaultMode") is not None:
            return int(volume[kind]["defaultMode"]) & 0o777
    return 0o644


FILE_VOLUMES = ("configMap", "secret", "projected", "downwardAPI")


def status_mounts(spec: dict) -> list[dict]:
    """A container's volumeMounts as its status reports them."""
    mounts = []
    for vm in spec.get("volumeMounts") or []:
        entry = {"name": vm["name"], "mountPath": vm["mountPath"]}
        if vm.get("readOnly"):
            entry["readOnly"] = True
            entry["recursiveReadOnly"] = "Disabled"
        mounts.append(entry)
    return mounts


def has_token(volume: dict | None) -> bool:
    return any("serviceAccountToken" in source for source in ((volume or {}).get("projected") or {}).get("sources") or [])


class PodVolumes:
    """The volumes of one pod (see the module docstring); `env` resolves the files of
    configMap, secret, downwardAPI and projected volumes (env.EnvResolver), None until the
    agent has API access."""

    def __init__(self, pod_dir: str, data_dir: str, state_dir: str, cache_dir: str):
        self.pod_dir = pod_dir
        self.data_dir = data_dir  # the pod's disk (podworker.pod_data_dir): emptyDirs of the default medium
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.sources: dict[str, str] = {}  # volume name -> the node's directory (or file) behind it

    async def prepare(self, pod: dict, env, container_specs: list[dict]) -> None:
        """Every volume a container mounts, made ready before the sandbox (FailedMount
        otherwise), group-owned by fsGroup as the kubelet makes them."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        for spec in container_specs:
            for vm in spec.get("volumeMounts") or []:
                volume = volumes.get(vm["name"])
                if volume is None or vm["name"] in self.sources:
                    continue
                self.sources[vm["name"]] = await self._owned(pod, env, volume)

    async def mounts(self, pod: dict, env, spec: dict, image_mounts: dict[str, str]) -> list[dict]:
        """Bind mounts for a container's root: its volumeMounts, then its image's own mounts
        (read-only when shared by the node's pods: busybox's /bin)."""
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        mounts: list[dict] = []
        for vm in spec.get("volumeMounts") or []:
            volume = volumes.get(vm["name"])
            if volume is None:
                continue
            if vm["name"] not in self.sources:  # an agent restarted since the sandbox was made
                self.sources[vm["name"]] = await self._prepare(pod, env, volume)
            source = self.sources[vm["name"]]
            owned = "hostPath" not in volume
            if vm.get("subPath"):
                source = os.path.join(source, vm["subPath"])
                if not os.path.lexists(source) and owned:
                    os.makedirs(source, exist_ok=True)
            readonly = bool(vm.get("readOnly")) or any(k in volume for k in FILE_VOLUMES)
            mounts.append({"target": vm["mountPath"], "source": source, "readonly": readonly, "owned": owned})
        targets = {m["target"].rstrip("/") or "/" for m in mounts}
        for target, source in image_mounts.items():
            if target.rstrip("/") not in targets:
                shared = source.startswith(self.cache_dir + os.sep)
                mounts.append({"target": target, "source": source, "readonly": shared, "owned": not shared})
        return mounts

    async def refresh_tokens(self, pod: dict, env, now: float) -> float | None:
        """Write the pod's service-account token volumes again once their token is due for
        renewal (the kubelet rotates projected tokens at 80% of their lifetime; the volume's
        ..data swap shows the new file to the containers at once). Returns when to look again;
        raises VolumeError."""
        uid = pod["metadata"].get("uid", "")
        renew_at = env.token_renew_at(uid) if env is not None else None
        if renew_at is None:
            return None
        if now < renew_at:
            return renew_at - now
        volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
        for name in list(self.sources):
            if has_token(volumes.get(name)):
                self.sources[name] = await self._owned(pod, env, volumes[name])
        renew_at = env.token_renew_at(uid)
        return None if renew_at is None else max(0.0, renew_at - now)

    async def _owned(self, pod: dict, env, volume: dict) -> str:
        """_prepare, then group-owned by the pod's fsGroup (not a hostPath)."""
        source = await self._prepare(pod, env, volume)
        fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        if fs_group is not None and "hostPath" not in volume:
            set_volume_ownership(source, int(fs_group), any(k in volume for k in FILE_VOLUMES))
        return source

    async def _prepare(self, pod: dict, env, volume: dict) -> str:
        name = volume["name"]
        directory = os.path.join(self.pod_dir, "volumes", name)
        if "hostPath" in volume:
            return host_path(volume["hostPath"], name)
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            path = os.path.join(self.state_dir, "claims", pod["metadata"].get("namespace", "default"), claim)
            os.makedirs(path, exist_ok=True)
            return path
        if any(k in volume for k in FILE_VOLUMES):
            if env is None:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : no API access yet')
            try:
                files = await env.volume_files(pod, volume)
            except Exception as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : '
                                  f'{getattr(exc, "message", None) or exc}') from None
            write_volume_files(directory, files, volume_mode(volume))
            protect_tokens(pod, directory, volume)
            return directory
        if ((volume.get("emptyDir") or {}).get("medium") or "") != "Memory":
            directory = os.path.join(self.data_dir, "volumes", name)  # the node's disk, as a kubelet's emptyDir
        os.makedirs(directory, exist_ok=True)  # emptyDir and anything else: a directory of the pod
        os.chmod(directory, 0o777)
        return directory


def protect_tokens(pod: dict, directory: str, volume: dict) -> None:
    """A projected service-account token as the kubelet writes it: with fsGroup, or with
    one runAsUser for every container, 0600 and owned by that user (fsGroup then adds
    group read), so the pod's user and nobody else reads it."""
    spec = pod.get("spec") or {}
    users = {security.effective_context(pod, c).get("runAsUser")
             for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
    fs_user = users.pop() if len(users) == 1 else None
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    if fs_user is None and fs_group is None:
        return
    for source in (volume.get("projected") or {}).get("sources") or []:
        if "serviceAccountToken" in source:
            token = os.path.join(directory, source["serviceAccountToken"].get("path") or "token")
            if os.path.exists(token):
                os.chmod(token, 0o600)
                if fs_user is not None:
                    os.chown(os.path.realpath(token), int(fs_user), -1)


def host_path(src: dict, name: str) -> str:
    """A hostPath volume's path, made or checked as its type says."""
    path = src.get("path", "")
    kind = src.get("type") or ""
    if kind == "DirectoryOrCreate":
        os.makedirs(path, exist_ok=True)
    elif kind == "FileOrCreate" and not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "a").close()
    elif kind == "Directory" and not os.path.isdir(path):
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                          f'{path} is not a directory')
    elif kind == "File" and not os.path.isfile(path):
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: '
                          f'{path} is not a file')
    elif not os.path.exists(path):
        os.makedirs(path, exist_ok=True)
    return path
