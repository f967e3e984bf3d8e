"""A container's securityContext as the kubelet and containerd turn it into a process: pure logic.

- `process_security()` merges the pod's and the container's securityContext (the container's
  fields win) into what the sandbox spawner applies before exec (nsinit.py): uid, gid and
  groups, the capability mask, no_new_privs, the seccomp filter, a read-only root, and
  /proc's masked and read-only paths.
- Identity as containerd resolves it: `runAsUser` or the image's USER (a name is looked up in
  the image's /etc/passwd), `runAsGroup` or the user's primary group (0 without a passwd
  entry: the kubelet still runs a uid the image does not know), and the groups: the primary
  one, fsGroup, supplementalGroups and the image's /etc/group memberships.
- Capabilities: containerd's default set is the base; `add`/`drop` with "ALL" first, then
  the named ones (without the CAP_ prefix, any case, as containerd prefixes them). A name the
  kernel does not know is ignored, as runc ignores it (with a warning: `unknown_capabilities`).
  `privileged: true` gets every capability (every one the node agent holds). A root process
  gets the set as its effective capabilities; another user keeps it as its bounding set only
  (its effective set is empty after exec), as runc does.
- `allowPrivilegeEscalation: false` sets no_new_privs; privileged containers never get it.
- `seccompProfile: RuntimeDefault` (pod or container) loads `seccomp_filter()`: a classic BPF
  program refusing (EPERM) what containerd's default profile refuses: namespace and mount
  syscalls without CAP_SYS_ADMIN, kernel modules, kexec, keyrings, reboot, clock setting,
  swap, io_uring, ... and clone3 (ENOSYS, so libc falls back to clone). It is a deny list of
  those syscalls, not the profile's allow list; docs/adr/0009 says why. Unconfined or no
  profile: no filter (the kubelet's default); Localhost profiles are refused.
- runAsNonRoot: the kubelet's refusal messages (`verify_run_as_non_root`).
"""

from __future__ import annotations

import platform
import struct

# capability numbers (linux/capability.h); index = number
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
CAP_NUMBER = {name: number for number, name in enumerate(CAPABILITIES)}
# containerd's default set (the CRI plugin's, as Docker's)
DEFAULT_CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")

# what runc masks (an empty read-only view) and makes read-only in a container's /proc and /sys
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def mask_of(names) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBER[name]
    return mask


def capability_mask(capabilities: dict | None, privileged: bool, available: int) -> tuple[int, list[str]]:
    """The container's capability set as a mask (within `available`: what the node agent itself
    holds, "all" for a privileged container), and the names that are unknown or unavailable."""
    if privileged:
        return available, []
    mask = mask_of(DEFAULT_CAPABILITIES)
    capabilities = capabilities or {}
    add = [str(c) for c in capabilities.get("add") or []]
    drop = [str(c) for c in capabilities.get("drop") or []]
    if any(c.upper() == "ALL" for c in add):
        mask = available
    if any(c.upper() == "ALL" for c in drop):
        mask = 0
    unknown = []
    for names, adding in ((add, True), (drop, False)):
        for name in names:
            if name.upper() == "ALL":
                continue
            full = "CAP_" + name.upper()  # containerd prefixes every name
            number = CAP_NUMBER.get(full)
            if number is None or not available & (1 << number):
                unknown.append(full)
                continue
            mask = mask | (1 << number) if adding else mask & ~(1 << number)
    return mask & available, unknown


def effective_context(pod: dict, container: dict) -> dict:
    """The container's securityContext over the pod's (the fields both have)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    merged = {key: pod_sc[key] for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
              if pod_sc.get(key) is not None}
    merged.update({key: value for key, value in sc.items() if value is not None})
    return merged


def _parse_accounts(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#") and ":" in line]


def resolve_identity(image_user: str, passwd: str, group: str, run_as_user: int | None = None,
                     run_as_group: int | None = None, fs_group: int | None = None,
                     supplemental: list[int] | None = None) -> tuple[int, int, list[int]]:
    """(uid, gid, groups) of the container's process. Raises ValueError for an image user name
    the image's passwd lacks (containerd: `no users found`)."""
    users = _parse_accounts(passwd)
    name = None
    uid = gid = None
    user_part, _, group_part = (image_user or "0").partition(":")
    if run_as_user is not None:
        uid = int(run_as_user)
    elif user_part.isdigit():
        uid = int(user_part)
    else:
        entry = next((u for u in users if u[0] == user_part), None)
        if entry is None:
            raise ValueError(f"no users found matching {user_part}")
        uid = int(entry[2])
    entry = next((u for u in users if len(u) > 3 and u[2].isdigit() and int(u[2]) == uid), None)
    if entry is not None:
        name = entry[0]
    if run_as_group is not None:
        gid = int(run_as_group)
    elif group_part.isdigit() and run_as_user is None:
        gid = int(group_part)
    elif entry is not None and entry[3].isdigit():
        gid = int(entry[3])
    else:
        gid = 0
    groups = [gid]
    if fs_group is not None:
        groups.append(int(fs_group))
    groups += [int(g) for g in supplemental or []]
    if name is not None:
        for fields in _parse_accounts(group):
            if len(fields) > 3 and fields[2].isdigit() and name in fields[3].split(","):
                groups.append(int(fields[2]))
    return uid, gid, sorted(set(groups))


def image_user_is_root(image_user: str) -> bool | None:
    """True/False for a numeric image user; None for a name (the kubelet cannot verify it)."""
    user = (image_user or "0").partition(":")[0]
    if user.isdigit():
        return int(user) == 0
    return None


def verify_run_as_non_root(context: dict, image_user: str, pod_text: str, container: str) -> str | None:
    """The kubelet's refusal (CreateContainerConfigError) for runAsNonRoot, or None."""
    if not context.get("runAsNonRoot"):
        return None
    if context.get("runAsUser") is not None:
        if int(context["runAsUser"]) == 0:
            return f'container\'s runAsUser breaks non-root policy (pod: "{pod_text}", container: {container})'
        return None
    root = image_user_is_root(image_user)
    if root is None:
        user = (image_user or "").partition(":")[0]
        return (f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is "
                f'non-root (pod: "{pod_text}", container: {container})')
    if root:
        return f'container has runAsNonRoot and image will run as root (pod: "{pod_text}", container: {container})'
    return None


def seccomp_type(context: dict) -> str:
    profile = context.get("seccompProfile") or {}
    return profile.get("type") or "Unconfined"


# ---- seccomp: RuntimeDefault as a deny list --------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# syscall numbers: (x86_64, aarch64); None where the architecture lacks the call
SYSCALLS = {
    "acct": (163, 89), "add_key": (248, 217), "bpf": (321, 280), "clock_adjtime": (305, 266),
    "clock_settime": (227, 112), "create_module": (174, None), "delete_module": (176, 106),
    "fanotify_init": (300, 262), "finit_module": (313, 273), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fsopen": (430, 430), "fspick": (433, 433), "get_kernel_syms": (177, None), "get_mempolicy": (239, 236),
    "init_module": (175, 105), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "io_uring_setup": (425, 425), "ioperm": (173, None), "iopl": (172, None), "kcmp": (312, 272),
    "kexec_file_load": (320, 294), "kexec_load": (246, 104), "keyctl": (250, 219), "lookup_dcookie": (212, 18),
    "mbind": (237, 235), "mount": (165, 40), "mount_setattr": (442, 442), "move_mount": (429, 429),
    "move_pages": (279, 239), "name_to_handle_at": (303, 264), "nfsservctl": (180, 42),
    "open_by_handle_at": (304, 265), "open_tree": (428, 428), "perf_event_open": (298, 241),
    "pidfd_getfd": (438, 438), "pivot_root": (155, 41), "process_madvise": (440, 440),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "query_module": (178, None),
    "quotactl": (179, 60), "reboot": (169, 142), "request_key": (249, 218), "set_mempolicy": (238, 237),
    "setdomainname": (171, 162), "sethostname": (170, 161), "setns": (308, 268), "settimeofday": (164, 170),
    "swapoff": (168, 225), "swapon": (167, 224), "sysfs": (139, None), "_sysctl": (156, None),
    "syslog": (103, 116), "umount2": (166, 39), "unshare": (272, 97), "uselib": (134, None),
    "userfaultfd": (323, 282), "ustat": (136, None), "vhangup": (153, 58), "clone": (56, 220), "clone3": (435, 435),
}
# what the default profile allows only with a capability in the container's bounding set
CAPABILITY_GATED = {
    "CAP_SYS_ADMIN": ("bpf", "fanotify_init", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
                      "name_to_handle_at", "open_tree", "fsconfig", "fsmount", "fsopen", "fspick",
                      "perf_event_open", "pivot_root", "quotactl", "setdomainname", "sethostname", "setns", "syslog",
                      "umount2", "unshare"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "clock_settime", "clock_adjtime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "move_pages"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}
# never allowed by the default profile
ALWAYS_DENIED = ("add_key", "keyctl", "request_key", "kexec_load", "kexec_file_load", "create_module",
                 "get_kernel_syms", "query_module", "nfsservctl", "swapon", "swapoff", "sysfs", "_sysctl", "uselib",
                 "userfaultfd", "ustat", "io_uring_setup", "io_uring_enter", "io_uring_register")
CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
EPERM, ENOSYS = 1, 38
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
X32_SYSCALL_BIT = 0x40000000
# classic BPF opcodes
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def denied_syscalls(capabilities: int) -> list[str]:
    """The syscalls RuntimeDefault refuses to a container with this capability mask."""
    allowed_by_caps = set()
    for cap, names in CAPABILITY_GATED.items():
        if capabilities & (1 << CAP_NUMBER[cap]):
            allowed_by_caps.update(names)
    gated = {name for names in CAPABILITY_GATED.values() for name in names}
    return sorted((gated - allowed_by_caps) | set(ALWAYS_DENIED))


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_filter(capabilities: int, machine: str | None = None) -> bytes:
    """The RuntimeDefault filter (struct sock_filter[]) for this machine's architecture."""
    machine = machine or platform.machine()
    column = {"x86_64": 0, "aarch64": 1}.get(machine)
    if column is None:
        raise ValueError(f"seccomp RuntimeDefault is not available on {machine}")
    denied = sorted({SYSCALLS[name][column] for name in denied_syscalls(capabilities)
                     if SYSCALLS[name][column] is not None})
    restrict_clone = not capabilities & (1 << CAP_NUMBER["CAP_SYS_ADMIN"])
    deny, allow = SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ALLOW
    body: list[bytes] = []
    tail = [_insn(RET_K, 0, 0, allow), _insn(RET_K, 0, 0, deny)]
    checks = [("deny", number) for number in denied]  # each a jump to the EPERM return
    if restrict_clone:
        checks.append(("clone", SYSCALLS["clone"][column]))
        checks.append(("clone3", SYSCALLS["clone3"][column]))
    # layout: [arch check][load nr][x32 check][checks...][ret allow][ret deny][clone block][ret ENOSYS]
    clone_block = [_insn(LD_W_ABS, 0, 0, 16),                          # args[0], low 32 bits
                   _insn(JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS),         # namespace flags: deny
                   _insn(RET_K, 0, 0, deny),
                   _insn(RET_K, 0, 0, allow)]
    enosys = [_insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]
    n = len(checks)
    for i, (kind, number) in enumerate(checks):
        remaining = n - i - 1  # instructions after this one before the tail
        allow_at, deny_at = remaining, remaining + 1
        clone_at, enosys_at = remaining + 2, remaining + 2 + len(clone_block)
        target = {"deny": deny_at, "clone": clone_at, "clone3": enosys_at}[kind]
        body.append(_insn(JEQ_K, target, 0, number))
    head = [_insn(LD_W_ABS, 0, 0, 4),                                   # arch
            _insn(JEQ_K, 1, 0, AUDIT_ARCH[machine]),
            _insn(RET_K, 0, 0, deny),                                   # other ABIs (i386): refused
            _insn(LD_W_ABS, 0, 0, 0)]                                   # nr
    if machine == "x86_64":
        head += [_insn(JGE_K, 0, 1, X32_SYSCALL_BIT), _insn(RET_K, 0, 0, deny)]
    return b"".join(head + body + tail + clone_block + enosys)


def process_security(pod: dict, container: dict, *, image_user: str, passwd: str, group: str,
                     available: int) -> dict:
    """What the spawner applies to the container's process (and to exec sessions in it):
    uid, gid, groups, caps, no_new_privs, seccomp (hex BPF or None), readonly_rootfs,
    masked_paths, readonly_paths, privileged. Raises ValueError for an unknown image user or
    a Localhost seccomp profile (the container's CreateContainerConfigError)."""
    context = effective_context(pod, container)
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    privileged = bool(context.get("privileged"))
    caps, unknown = capability_mask(context.get("capabilities"), privileged, available)
    uid, gid, groups = resolve_identity(image_user, passwd, group, context.get("runAsUser"),
                                        context.get("runAsGroup"), pod_sc.get("fsGroup"),
                                        pod_sc.get("supplementalGroups"))
    seccomp = None
    if seccomp_type(context) == "Localhost":
        raise ValueError("seccomp profile type Localhost is not supported by pocketkube (use RuntimeDefault)")
    if seccomp_type(context) == "RuntimeDefault" and not privileged:
        seccomp = seccomp_filter(caps).hex()
    unmasked = privileged or context.get("procMount") == "Unmasked"
    return {"uid": uid, "gid": gid, "groups": groups, "caps": caps,
            "no_new_privs": context.get("allowPrivilegeEscalation") is False and not privileged,
            "seccomp": seccomp, "readonly_rootfs": bool(context.get("readOnlyRootFilesystem")),
            "masked_paths": [] if unmasked else list(MASKED_PATHS),
            "readonly_paths": [] if unmasked else list(READONLY_PATHS),
            "privileged": privileged, "unknown_capabilities": unknown}
