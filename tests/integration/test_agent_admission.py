"""The node agent's admission (the kubelet's canAdmitPod): a pod bound to the node whose host
ports a running pod already holds is rejected (phase Failed, reason NodePorts, a Warning
event) and never run; once the holder is gone, its replacement runs. Also how often the agent
writes a running pod's status (once). The agent is the real NodeAgent against an in-process
API server; only its PodManager is a stand-in that records which pods it was asked to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect

from pocketkube.apiserver.local import LocalTransport
from pocketkube.apiserver.server import APIServer
from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.node.agent import NodeAgent
from pocketkube.node.podstatus import ContainerView, generate_pod_status

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


@contextlib.asynccontextmanager
async def agent_beside_server(tmp_path, pods, transport_class=None):
    """An in-process API server and the real NodeAgent of NODE on it, with `pods` as its
    PodManager, its client's transport a `transport_class` (LocalTransport by default);
    yields (server, transport, client); both stopped at the end."""
    server = APIServer(str(tmp_path / "server"), port=0, datastore="memory")
    await server.start()
    transport = (transport_class or LocalTransport)(server.handlers)
    client = Client(transport, field_manager="test")
    agent = NodeAgent(client, node_name=NODE, node_ip="127.0.0.1", pod_cidr="10.244.9.0/24",
                      state_dir=str(tmp_path / "agent"), pod_manager=pods, streaming=False)
    await agent.start()
    try:
        yield server, transport, client
    finally:
        await agent.stop()
        await server.stop()


async def test_a_pod_whose_host_port_is_taken_is_rejected_not_run(tmp_path):
    pods = RecordingPods()
    async with agent_beside_server(tmp_path, pods) as (_, _, client):
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


async def test_pods_in_namespaces_named_like_the_agents_own_work_run(tmp_path):
    """The agent's work queue holds three kinds of work (sync a pod, write its status, stop an
    orphan); a pod in a namespace named `status` or `orphan` is synced like any other and its
    status written (with string keys, `status/web` was taken for a status write and never run)."""
    pods = RecordingPods()
    async with agent_beside_server(tmp_path, pods) as (_, _, client):
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


class CountingTransport(LocalTransport):
    """The in-process server's transport, counting the status writes that go through it."""

    def __init__(self, handlers):
        super().__init__(handlers)
        self.status_writes: list[str] = []
        self.deletes: list[str] = []

    async def request(self, method, path, query, body, content_type):
        if method == "PATCH" and "/pods/" in path and path.endswith("/status"):
            self.status_writes.append(path)
        if method == "DELETE" and "/pods/" in path:
            self.deletes.append(path)
        return await super().request(method, path, query, body, content_type)


class SlowWatchTransport(CountingTransport):
    """Watch events arrive `delay` seconds late, as over a busy node's network: a request's
    answer can come back before the watch event of an earlier write."""

    delay = 0.3

    async def watch(self, path, query):
        async for line in super().watch(path, query):
            await asyncio.sleep(self.delay)
            yield line


class StatusFromPods(RecordingPods):
    """Each synced pod runs; its status is the kubelet's (podstatus.generate_pod_status) over
    the latest pod the agent synced, so the conditions the kubelet does not own (PodScheduled)
    come from the stored pod, as the real pod workers' do."""

    def __init__(self) -> None:
        super().__init__()
        self.now = "2026-12-07T00:00:00Z"

    def current_status(self, uid: str, terminal_phase: str | None = None) -> dict | None:
        pod = self.running.get(uid)
        if pod is None:
            return None
        view = ContainerView(name="c", image="busybox", state="running", started_at=self.now, ready=True,
                             started=True)
        return generate_pod_status(pod, init_views=[], views=[view], sandbox_ready=True, pod_ip="10.244.9.2",
                                   host_ip="127.0.0.1", start_time=self.now, terminal_phase=terminal_phase,
                                   previous_conditions=[], now=self.now)

    async def terminate(self, pod: dict, grace_seconds: int) -> dict | None:
        """Stopped at once; the final status (Succeeded) is what the agent writes before the DELETE."""
        final = self.current_status(pod["metadata"]["uid"], terminal_phase="Succeeded")
        await super().terminate(pod, grace_seconds)
        return final


async def test_a_running_pod_gets_one_status_write(tmp_path):
    """The status the kubelet computes copies PodScheduled from the stored pod: the binding stored
    it with `lastProbeTime: null`, the status patch leaves no such key. That null and a missing
    key are one value to the agent: a started pod costs the server one status write, not a
    second identical one after the watch brings the first one back."""
    pods = StatusFromPods()
    async with agent_beside_server(tmp_path, pods, CountingTransport) as (_, transport, client):
        web = pod("web", 0)
        del web["spec"]["containers"][0]["ports"]
        del web["spec"]["nodeName"]
        created = await client.create("v1", "pods", web, namespace="default")
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}}
        await client.create("v1", "pods", binding, namespace="default", subresource="binding", name="web")

        async def running():
            got = await client.get("v1", "pods", "web", namespace="default")
            return got if got.get("status", {}).get("phase") == "Running" else None

        stored = (await eventually(running))["status"]
        scheduled = next(c for c in stored["conditions"] if c["type"] == "PodScheduled")
        assert scheduled["status"] == "True"
        await asyncio.sleep(1.5)  # > one resync, and the watch event of the write is back
        assert transport.status_writes == ["/api/v1/namespaces/default/pods/web/status"]
        assert created["metadata"]["uid"] in pods.running


async def test_a_deleted_pod_is_deleted_once_by_the_agent(tmp_path):
    """A pod deleted gracefully: the agent stops it, writes its final status, then deletes it
    for good (grace 0, its uid as precondition) once; the watch event of that final status,
    which arrives while the pod is still there, does not make it delete again."""
    pods = StatusFromPods()
    async with agent_beside_server(tmp_path, pods, SlowWatchTransport) as (server, transport, client):
        admin = Client(LocalTransport(server.handlers), field_manager="test")
        web = pod("web", 0)
        del web["spec"]["containers"][0]["ports"]
        created = await admin.create("v1", "pods", web, namespace="default")
        await eventually(lambda: created["metadata"]["uid"] in pods.running)
        await admin.delete("v1", "pods", "web", namespace="default")

        async def gone():
            try:
                await admin.get("v1", "pods", "web", namespace="default")
            except errors.APIError as exc:
                return exc.code == 404
            return False

        await eventually(gone)
        await asyncio.sleep(2.0)  # > one resync, and the late watch events are in
        assert transport.deletes == ["/api/v1/namespaces/default/pods/web"]
        assert created["metadata"]["uid"] not in pods.running
