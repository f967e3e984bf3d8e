"""The nftables backend's runner against the real kernel through libnftables, in a throwaway
network namespace: a transaction lands in that namespace (not in the caller's), its names
read back, and a refused transaction raises nft's own message and changes nothing."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from pocketkube.proxy.nftables import NftError, NftRunner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

TABLE = "pk-runnertest-proxy"


@pytest.fixture
def netns():
    name = f"pkt-nft-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def tables(netns: str | None) -> str:
    argv = ["nft", "list", "tables"]
    return subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv, capture_output=True,
                          text=True, check=True).stdout


async def test_transactions_land_in_the_runners_namespace(netns):
    runner = NftRunner(netns)
    try:
        assert await runner.list_names(TABLE) is None
        await runner.apply(f"add table ip {TABLE}\n"
                           f"add set ip {TABLE} cluster-ips {{ type ipv4_addr ; }}\n"
                           f"add chain ip {TABLE} services\n"
                           f"add rule ip {TABLE} services ip daddr @cluster-ips drop\n")
        assert await runner.list_names(TABLE) == ({"services"}, {"cluster-ips"})
        assert f"table ip {TABLE}" in tables(netns)
        assert TABLE not in tables(None)
        with pytest.raises(NftError, match="No such file or directory"):
            await runner.apply(f"add chain ip {TABLE} other\nadd rule ip {TABLE} absent drop\n")
        assert await runner.list_names(TABLE) == ({"services"}, {"cluster-ips"})  # all or nothing
        runner.close()  # (what the proxy's stop does) a later transaction makes a new thread and context
        await runner.apply(f"delete table ip {TABLE}\n")
        assert await runner.list_names(TABLE) is None
    finally:
        runner.close()
    assert TABLE not in tables(None)
