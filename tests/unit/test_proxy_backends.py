"""The proxy modes as sibling backends: the proxier finds a mode by name, and each mode
removes only what it leaves on a node (commands recorded by a fake runner)."""

from __future__ import annotations

from pocketkube.proxy.backend import Backend, Commands, NodeSettings, backends
from pocketkube.proxy.nftables import NftablesBackend, NftRunner
from pocketkube.proxy.userspace import UserspaceBackend


class RecordingCommands(Commands):
    def __init__(self):
        super().__init__(None)
        self.argvs: list[list[str]] = []

    async def run(self, argv, stdin=None):
        self.argvs.append(argv)
        return 0, "", ""


def test_every_mode_is_a_backend_found_by_name():
    modes = backends()
    assert list(modes) == ["nftables", "userspace"]  # the first is the default
    assert all(issubclass(b, Backend) and b.mode == name for name, b in modes.items())


def test_create_builds_each_mode_for_its_node():
    node = NodeSettings(node_name="node-2", cluster_name="dev", cluster_cidr="10.244.0.0/16",
                        service_cidr="10.96.0.0/12", netns="pk-dev-node2")
    nft = backends()["nftables"].create(node)
    assert isinstance(nft, NftablesBackend) and isinstance(nft.runner, NftRunner)
    assert nft.cfg.table == "pk-dev-proxy" and nft.cfg.node_name == "node-2"
    assert nft.service_route_device == "cni0" and nft.runner.netns == "pk-dev-node2"
    user = backends()["userspace"].create(node)
    assert isinstance(user, UserspaceBackend) and user.cfg.node_name == "node-2"
    assert type(user.runner) is Commands and user.runner.netns == "pk-dev-node2"


async def test_nftables_leftovers_are_its_table_and_route():
    commands = RecordingCommands()
    await NftablesBackend.remove_leftovers(NodeSettings(cluster_name="dev", service_cidr="10.96.0.0/12"), commands)
    assert commands.argvs == [["nft", "delete", "table", "ip", "pk-dev-proxy"],
                              ["ip", "route", "del", "10.96.0.0/12", "dev", "cni0"]]
    commands.argvs.clear()
    await NftablesBackend.remove_leftovers(NodeSettings(cluster_name="dev", service_route_device=None), commands)
    assert commands.argvs == [["nft", "delete", "table", "ip", "pk-dev-proxy"]]


async def test_userspace_leftovers_are_its_dummy_interface():
    commands = RecordingCommands()
    await UserspaceBackend.remove_leftovers(NodeSettings(cluster_name="dev"), commands)
    assert commands.argvs == [["ip", "link", "del", "pk-svc"]]
