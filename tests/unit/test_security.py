"""securityContext -> what a container's process becomes (node/security.py), and the image's
/etc/passwd and /etc/group (node/images): pure logic."""

from __future__ import annotations

import ctypes
import ctypes.util
import struct

import pytest

from pocketkube.node import images, security
from pocketkube.node.security import (AUDIT_ARCH, CAP_NUMBER, DEFAULT_CAPABILITIES, SYSCALLS, capability_mask,
                                      mask_of, process_security, resolve_identity, seccomp_filter,
                                      verify_run_as_non_root)

ALL = (1 << 41) - 1
PASSWD = images.passwd_file(["nginx:x:101:101:nginx:/nonexistent:/bin/false", "app:x:1000:1000::/home/app:/bin/sh"])
GROUP = images.group_file(["nginx:x:101:", "app:x:1000:", "audio:x:29:nginx"])


def test_default_capabilities_are_containerds():
    assert capability_mask(None, False, ALL) == (0xA80425FB, [])
    assert mask_of(DEFAULT_CAPABILITIES) == 0xA80425FB


@pytest.mark.parametrize("caps, expected", [
    ({"drop": ["ALL"]}, 0),
    ({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, 1 << CAP_NUMBER["CAP_NET_BIND_SERVICE"]),
    ({"drop": ["net_raw", "KILL"]}, 0xA80425FB & ~(1 << 13) & ~(1 << 5)),
    ({"add": ["NET_ADMIN", "SYS_ADMIN"]}, 0xA80425FB | 1 << 12 | 1 << 21),
    ({"add": ["ALL"], "drop": ["CHOWN"]}, ALL & ~1),      # "ALL" first, then the names
    ({"add": ["ALL"], "drop": ["ALL"]}, 0),
])
def test_add_and_drop(caps, expected):
    assert capability_mask(caps, False, ALL) == (expected, [])


def test_unknown_and_unavailable_capabilities_are_ignored_and_reported():
    available = ALL & ~(1 << CAP_NUMBER["CAP_SYS_RESOURCE"])
    mask, unknown = capability_mask({"add": ["NOT_A_CAP", "SYS_RESOURCE", "CAP_CHOWN"]}, False, available)
    assert mask == 0xA80425FB and unknown == ["CAP_NOT_A_CAP", "CAP_SYS_RESOURCE", "CAP_CAP_CHOWN"]
    assert capability_mask({"drop": ["ALL"]}, True, available) == (available, [])  # privileged: all there is


@pytest.mark.parametrize("args, expected", [
    (("0",), (0, 0, [0])),
    (("nginx",), (101, 101, [29, 101])),                   # a name: passwd, then group memberships
    (("101:7",), (101, 7, [7, 29])),
    (("0", 1000, 3000, 2000, [4000]), (1000, 3000, [2000, 3000, 4000])),  # the docs' example
    (("0", 1234), (1234, 0, [0])),                         # no passwd entry: gid 0, it still runs
    (("0", 1000), (1000, 1000, [1000])),                   # the entry's primary group
])
def test_identity(args, expected):
    assert resolve_identity(args[0], PASSWD, GROUP, *args[1:]) == expected


def test_an_image_user_without_entry_is_an_error():
    with pytest.raises(ValueError, match="no users found matching ghost"):
        resolve_identity("ghost", PASSWD, GROUP)


def test_run_as_non_root_messages():
    pod = "p_default(uid)"
    assert verify_run_as_non_root({"runAsNonRoot": True}, "0", pod, "c") == \
        'container has runAsNonRoot and image will run as root (pod: "p_default(uid)", container: c)'
    assert verify_run_as_non_root({"runAsNonRoot": True, "runAsUser": 0}, "101", pod, "c") == \
        'container\'s runAsUser breaks non-root policy (pod: "p_default(uid)", container: c)'
    assert "image has non-numeric user (nginx), cannot verify" in verify_run_as_non_root(
        {"runAsNonRoot": True}, "nginx", pod, "c")
    assert verify_run_as_non_root({"runAsNonRoot": True}, "101", pod, "c") is None
    assert verify_run_as_non_root({"runAsNonRoot": True, "runAsUser": 5}, "0", pod, "c") is None
    assert verify_run_as_non_root({}, "0", pod, "c") is None


def test_container_fields_win_over_the_pods():
    pod = {"spec": {"securityContext": {"runAsUser": 1, "runAsGroup": 2, "fsGroup": 3,
                                        "seccompProfile": {"type": "RuntimeDefault"}}}}
    sec = process_security(pod, {"securityContext": {"runAsUser": 5, "allowPrivilegeEscalation": False,
                                                     "readOnlyRootFilesystem": True}},
                           image_user="0", passwd=PASSWD, group=GROUP, available=ALL)
    assert (sec["uid"], sec["gid"], sec["groups"]) == (5, 2, [2, 3])
    assert sec["no_new_privs"] and sec["readonly_rootfs"] and sec["seccomp"]
    assert sec["masked_paths"] and "/proc/sys" in sec["readonly_paths"]
    privileged = process_security(pod, {"securityContext": {"privileged": True}}, image_user="0", passwd=PASSWD,
                                  group=GROUP, available=ALL)
    assert privileged["caps"] == ALL and not privileged["seccomp"] and not privileged["masked_paths"]
    unmasked = process_security({}, {"securityContext": {"procMount": "Unmasked"}}, image_user="0", passwd=PASSWD,
                                group=GROUP, available=ALL)
    assert unmasked["masked_paths"] == [] and unmasked["seccomp"] is None and not unmasked["no_new_privs"]


def test_passwd_and_group_files():
    assert PASSWD.splitlines()[0] == "root:x:0:0:root:/root:/bin/sh"
    assert PASSWD.endswith("app:x:1000:1000::/home/app:/bin/sh\n")
    assert images.passwd_file(["root:x:0:0:admin:/root:/bin/bash"]).splitlines()[0] == \
        "root:x:0:0:admin:/root:/bin/bash"  # an image's line for a base user replaces it
    assert "nogroup:x:65534:" in images.group_file([]).splitlines()


# ---- the seccomp filter, run by a small classic-BPF interpreter ----------------------------------

def run_filter(program: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == 0x06:
            return k
        else:
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_runtime_default_refuses_what_containerds_profile_refuses(machine):
    column = {"x86_64": 0, "aarch64": 1}[machine]
    arch = AUDIT_ARCH[machine]
    plain = seccomp_filter(0xA80425FB, machine)
    admin = seccomp_filter(0xA80425FB | 1 << CAP_NUMBER["CAP_SYS_ADMIN"], machine)
    eperm, enosys, allow = 0x00050001, 0x00050026, 0x7FFF0000
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "reboot", "bpf", "io_uring_setup"):
        assert run_filter(plain, arch, SYSCALLS[name][column]) == eperm, name
    for name in ("mount", "unshare", "setns"):
        assert run_filter(admin, arch, SYSCALLS[name][column]) == allow, name
    assert run_filter(admin, arch, SYSCALLS["keyctl"][column]) == eperm  # never allowed
    read, clone, clone3 = {"x86_64": 0, "aarch64": 63}[machine], SYSCALLS["clone"][column], SYSCALLS["clone3"][column]
    assert run_filter(plain, arch, read) == allow
    assert run_filter(plain, arch, clone, 0x11) == allow                   # fork
    assert run_filter(plain, arch, clone, 0x10000000 | 0x11) == eperm      # CLONE_NEWUSER
    assert run_filter(admin, arch, clone, 0x10000000 | 0x11) == allow
    assert run_filter(plain, arch, clone3) == enosys                       # libc falls back to clone
    assert run_filter(plain, 0x40000003, read) == eperm                    # another ABI (i386)
    if machine == "x86_64":
        assert run_filter(plain, arch, 0x40000000 | read) == eperm         # x32


def test_syscall_numbers_match_libseccomp():
    """Our table against libseccomp's, where this machine has it."""
    path = ctypes.util.find_library("seccomp")
    if path is None:
        pytest.skip("libseccomp is not installed")
    lib = ctypes.CDLL(path)
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    for machine, column in (("x86_64", 0), ("aarch64", 1)):
        for name, numbers in SYSCALLS.items():
            number = lib.seccomp_syscall_resolve_name_arch(AUDIT_ARCH[machine], name.encode())
            expected = numbers[column] if numbers[column] is not None else None
            if expected is None:
                assert number < 0, (machine, name, number)
            else:
                assert number == expected, (machine, name, number)
    assert "mount" in security.denied_syscalls(0) and "mount" not in security.denied_syscalls(1 << 21)


# ---- what a root binds and where a program is found (nsinit.py) --------------------------------

def test_held_paths_are_the_outermost_existing_ones_named_through_real_directories(tmp_path):
    from pocketkube.node.nsinit import held_paths

    (tmp_path / "usr" / "lib" / "x").mkdir(parents=True)
    (tmp_path / "usr" / "bin").mkdir()
    (tmp_path / "usr" / "bin" / "tool").write_text("")
    (tmp_path / "bin").symlink_to(tmp_path / "usr" / "bin")
    paths = [str(tmp_path / p) for p in ("usr/lib", "usr/lib/x", "bin/tool", "missing")]
    assert held_paths(paths) == [str(tmp_path / "usr" / "bin" / "tool"), str(tmp_path / "usr" / "lib")]


def test_a_program_is_found_in_path_as_runc_finds_it(tmp_path):
    from pocketkube.node.nsinit import find_program, start_error_message

    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "bin" / "data").write_text("")  # not executable
    path = f"{tmp_path}/nothing:{tmp_path}/bin"
    assert find_program("tool", path) == str(tool)
    assert find_program("data", path) is None and find_program(str(tmp_path / "bin"), path) is None
    assert find_program(str(tool), "") == str(tool)
    assert start_error_message("nginx").endswith(
        'unable to start container process: exec: "nginx": executable file not found in $PATH: unknown')
