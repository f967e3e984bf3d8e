"""The node agent's admission (the kubelet's canAdmitPod): a pod bound to the node whose host
ports a running pod already holds is rejected (phase Failed, reason NodePorts, a Warning
event) and never run; once the holder is gone, its replacement runs. The agent is the real
NodeAgent against an in-process API server; only its PodManager is a stand-in that records
which pods it was asked to run.
"""

from __future__ import annotations

import asyncio
import inspect

from pocketkube.apiserver.local import LocalTransport
from pocketkube.apiserver.server import APIServer
from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.node.agent import NodeAgent

NODE = "admission-node"


class RecordingPods:
    """PodManager's agent-facing interface: every pod synced 'runs' (phase Running)."""

    def __init__(self) -> None:
        self.running: dict[str, dict] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def sync(self, pod: dict, env) -> dict:
        self.running[pod["metadata"]["uid"]] = pod
        return self.current_status(pod["metadata"]["uid"])

    async def terminate(self, pod: dict, grace_seconds: int) -> None:
        self.running.pop(pod["metadata"]["uid"], None)

    def current_status(self, uid: str) -> dict | None:
        return {"phase": "Running"} if uid in self.running else None

    def reported(self, uid: str) -> bool:
        return uid in self.running

    def running_pods(self) -> list[str]:
        return sorted(self.running)


def pod(name: str, host_port: int, protocol: str = "TCP") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": NODE, "containers": [{
                "name": "c", "image": "busybox",
                "ports": [{"containerPort": host_port, "hostPort": host_port, "protocol": protocol}]}]}}


async def eventually(check, timeout: float = 10.0):
    """check() (a plain or async function) until it is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"not true after {timeout}s: {check}"
        await asyncio.sleep(0.05)


async def test_a_pod_whose_host_port_is_taken_is_rejected_not_run(tmp_path):
    server = APIServer(str(tmp_path / "server"), port=0, datastore="memory")
    await server.start()
    client = Client(LocalTransport(server.handlers), field_manager="test")
    pods = RecordingPods()
    agent = NodeAgent(client, node_name=NODE, node_ip="127.0.0.1", pod_cidr="10.244.9.0/24",
                      state_dir=str(tmp_path / "agent"), pod_manager=pods, streaming=False)
    await agent.start()
    try:
        holder = await client.create("v1", "pods", pod("holder", 21017), namespace="default")
        await eventually(lambda: (holder["metadata"]["uid"] in pods.running))
        other_protocol = await client.create("v1", "pods", pod("udp", 21017, "UDP"), namespace="default")
        late = await client.create("v1", "pods", pod("late", 21017), namespace="default")

        async def rejected():
            got = await client.get("v1", "pods", "late", namespace="default")
            return got if got.get("status", {}).get("phase") == "Failed" else None

        status = (await eventually(rejected))["status"]
        assert status["reason"] == "NodePorts"
        assert status["message"] == ("Pod was rejected: Predicate NodePorts failed: "
                                     "node(s) didn't have free ports for the requested pod ports")
        assert late["metadata"]["uid"] not in pods.running
        assert other_protocol["metadata"]["uid"] in pods.running  # UDP 21017 is another port

        async def warned():
            events = await client.list("v1", "events", namespace="default")
            return [e for e in events["items"] if e["involvedObject"]["name"] == "late"]

        (event,) = await eventually(warned)
        assert (event["type"], event["reason"]) == ("Warning", "NodePorts")
        assert event["message"] == "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"

        # stays rejected through resyncs, even after the holder goes
        await client.delete("v1", "pods", "holder", namespace="default")
        await eventually(lambda: (holder["metadata"]["uid"] not in pods.running))
        await asyncio.sleep(1.5)  # > one resync
        assert late["metadata"]["uid"] not in pods.running

        # a replacement for the rejected pod (what its controller makes) is admitted now
        await client.delete("v1", "pods", "late", namespace="default")
        again = await client.create("v1", "pods", pod("late", 21017), namespace="default")
        await eventually(lambda: (again["metadata"]["uid"] in pods.running))
    finally:
        await agent.stop()
        await server.stop()


async def test_pods_in_namespaces_named_like_the_agents_own_work_run(tmp_path):
    """The agent's work queue holds three kinds of work (sync a pod, write its status, stop an
    orphan); a pod in a namespace named `status` or `orphan` is synced like any other and its
    status written (with string keys, `status/web` was taken for a status write and never run)."""
    server = APIServer(str(tmp_path / "server"), port=0, datastore="memory")
    await server.start()
    client = Client(LocalTransport(server.handlers), field_manager="test")
    pods = RecordingPods()
    agent = NodeAgent(client, node_name=NODE, node_ip="127.0.0.1", pod_cidr="10.244.9.0/24",
                      state_dir=str(tmp_path / "agent"), pod_manager=pods, streaming=False)
    await agent.start()
    try:
        created = []
        for namespace in ("status", "orphan"):
            await client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": namespace}})
            web = pod("web", 0)
            del web["spec"]["containers"][0]["ports"]

            async def create(web=web, namespace=namespace):
                try:  # admission sees a new namespace once the watch cache has it
                    return await client.create("v1", "pods", web, namespace=namespace)
                except errors.APIError as exc:
                    assert exc.code == 404, exc
                    return None

            created.append(await eventually(create))
        for made in created:
            await eventually(lambda: made["metadata"]["uid"] in pods.running)

            async def running(namespace=made["metadata"]["namespace"]):
                got = await client.get("v1", "pods", "web", namespace=namespace)
                return got.get("status", {}).get("phase") == "Running"

            await eventually(running)
    finally:
        await agent.stop()
        await server.stop()
