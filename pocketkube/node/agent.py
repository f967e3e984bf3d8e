"""The node agent (pocketkube's kubelet): registers its Node, keeps its Lease, and runs
the pods bound to it.

It watches pods with `spec.nodeName=<node>`, hands each to the `PodManager` (sandbox,
containers, probes, status) and writes the status back through pods/NAME/status; pods
being deleted are stopped gracefully, then removed with gracePeriodSeconds=0, as the
kubelet does. Component shape of DESIGN.md: `start()`, `stop()`, `ready`.

A pod new to this node is admitted first, as the kubelet's canAdmitPod does: one whose host
ports are taken by a pod the node already runs (and that has not finished) is rejected, not
run: its status becomes phase Failed, reason `NodePorts`, message `Pod was rejected: Predicate
NodePorts failed: node(s) didn't ...`, with a Warning event, and it stays so (its controller
replaces it).

Its work queue holds three kinds of work, typed keys (`SyncPod`, `WriteStatus`, `Orphan`), so
no namespace name can pass for another kind of work.

Status writes are coalesced as the kubelet's status manager does: a pod's status is
written when its worker has something to report (the end of a sync pass, see
PodWorker.run) and differs from the last write, one write per pod at a time. The agent's
events are sent in the background, a few at a time, behind the status writes (an
EventRecorder with a Hold, core/events.py): they wait until no pod of the node has changed
and no status write has started or ended for EVENTS_QUIET_SECONDS (at most
EVENTS_DELAY_SECONDS), so a burst of new pods gets its statuses written first (the kubelet's
events go through a queue too; an event costs the API server as much as a status write, and
each pod makes three). A restarted agent
(the cluster's supervisor starts it again) adopts the pods its predecessor left running.

Back after the node lifecycle controller gave the node up (an agent that could not reach the API
for the grace period), it writes again what the controller overwrote, as the kubelet does: the
node's conditions with a new transition time (and the kubelet's NodeReady event), and the Ready
condition of its pods, which the controller set to False.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from collections import Counter
from dataclasses import dataclass

from pocketkube import __version__
from pocketkube.core import errors
from pocketkube.core.client import Client
from pocketkube.core.cluster import CLUSTER_DNS
from pocketkube.core.events import EventRecorder, Hold
from pocketkube.core.informer import Informer, object_key
from pocketkube.core.nodefit import PORTS_REASON, host_ports, ports_conflict
from pocketkube.core.objects import rfc3339, rfc3339_micro, without_nulls
from pocketkube.core.tasks import cancel_and_wait
from pocketkube.core.workqueue import WorkQueue
from pocketkube.node.env import EnvResolver

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.32.0"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10
RESYNC_SECONDS = 1.0  # how often a running pod is re-checked (probes, exits, restarts)
WORKERS = 16  # pods synced (and statuses written) at once
EVENTS_AT_ONCE = 8  # pod events being written at a time (a burst of pods must not open a connection each)
EVENTS_QUIET_SECONDS = 0.2  # pod events wait until the node's pods have been quiet this long ...
EVENTS_DELAY_SECONDS = 2.0  # ... or until the oldest has waited this long
KUBELET_PORT = 10250
TERMINAL_PHASES = ("Succeeded", "Failed")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# the kubelet's event when a condition comes back to what the agent reports
CONDITION_EVENTS = {"MemoryPressure": "NodeHasSufficientMemory", "DiskPressure": "NodeHasNoDiskPressure",
                    "PIDPressure": "NodeHasSufficientPID", "Ready": "NodeReady"}


# ---- the work queue's keys: what to do, typed (a namespace may be named anything) -------------

@dataclass(frozen=True)
class SyncPod:
    """Make the pod `namespace/name` run as its spec says, then write its status."""

    key: str


@dataclass(frozen=True)
class WriteStatus:
    """Only write the status of the pod `namespace/name` (its worker saw a change)."""

    key: str


@dataclass(frozen=True)
class Orphan:
    """The pod with this uid is gone from the API: stop what the node still runs for it."""

    uid: str


def node_object(name: str, ip: str, pod_cidr: str, port: int) -> dict:
    """The Node as the agent registers it (kubelet's initialNode + first status)."""
    mem_kib = _mem_total_kib()
    cpus = str(os.cpu_count() or 1)
    now = rfc3339()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": node_status(name, ip, port, cpus, mem_kib, now),
    }


def node_status(name: str, ip: str, port: int, cpus: str, mem_kib: int, now: str,
                transitions: dict | None = None) -> dict:
    transitions = transitions or {}
    resources = {"cpu": cpus, "memory": f"{mem_kib}Ki", "pods": "110", "ephemeral-storage": "102400000Ki",
                 "hugepages-1Gi": "0", "hugepages-2Mi": "0"}

    def cond(type_, status, reason, message):
        return {"type": type_, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": transitions.get(type_, now), "reason": reason, "message": message}

    uname = platform.uname()
    return {
        "capacity": resources, "allocatable": dict(resources),
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "ExternalIP", "address": ip},
                      {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {"machineID": _machine_id(), "systemUUID": _machine_id(), "bootID": _boot_id(),
                     "kernelVersion": uname.release, "osImage": _os_image(),
                     "containerRuntimeVersion": f"pocketkube://{__version__}",
                     "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                     "operatingSystem": "linux", "architecture": "amd64"},
    }


class NodeAgent:
    def __init__(self, client: Client, *, node_name: str, node_ip: str, pod_cidr: str, state_dir: str,
                 netns: str | None = None, port: int = KUBELET_PORT, cluster_dns: str = CLUSTER_DNS,
                 pod_manager=None, streaming: bool = True, stream_token: str | None = None):
        from pocketkube.node.pods import PodManager

        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.state_dir = state_dir
        self.port = port
        self.ready = asyncio.Event()
        self.recorder = EventRecorder(client, "kubelet", host=node_name,
                                      hold=Hold(EVENTS_QUIET_SECONDS, EVENTS_DELAY_SECONDS, EVENTS_AT_ONCE))
        self.pods = pod_manager or PodManager(node_name=node_name, node_ip=node_ip, pod_cidr=pod_cidr,
                                              state_dir=state_dir, netns=netns, cluster_dns=cluster_dns,
                                              on_event=self._pod_event,
                                              on_change=lambda pod: self.queue.add(WriteStatus(object_key(pod))))
        self.pod_informer = Informer(client, "v1", "pods", field_selector=f"spec.nodeName={node_name}")
        self.service_informer = Informer(client, "v1", "services")
        # the CA every pod's service account volume holds, watched rather than read per pod
        self.ca_informer = Informer(client, "v1", "configmaps", field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        self.env = EnvResolver(client, self.service_informer, configmaps=self.ca_informer)
        self.queue = WorkQueue(base_delay=0.5, max_delay=10.0)
        self._statuses: dict[str, dict] = {}  # uid -> last status written
        self._ready_mismatch: dict[str, str] = {}  # uid -> resourceVersion whose Ready differed from ours
        self._status_locks: dict[str, asyncio.Lock] = {}  # uid -> held while its status is written
        self._terminating: set[str] = set()
        self._deleted: set[str] = set()  # uids whose final DELETE was sent, until the watch says they are gone
        self._rejected: set[str] = set()  # uids refused at admission; they never run here
        self._tasks: list[asyncio.Task] = []
        self._streaming_server = None
        self._want_streaming = streaming
        self.stream_token = stream_token  # the API server presents it on exec/attach/logs/port-forward
        self._transitions: dict[str, str] = {}
        # Load-balancer addresses are announced only by an agent of a real node (its own
        # network namespace): never on the host's interfaces.
        self.announcer = None
        if netns:
            from pocketkube.node.announcer import Announcer

            self.announcer = Announcer(client, node_name=node_name, node_ip=node_ip, netns=netns,
                                       services=self.service_informer)

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        await self.pods.start()
        if self._want_streaming:
            from pocketkube.node.streaming import StreamingServer

            self._streaming_server = StreamingServer(self.pods, host=self.node_ip, port=self.port,
                                                     token=self.stream_token)
            await self._streaming_server.start()
            self.port = getattr(self._streaming_server, "port", self.port)
        await self._register()
        self.pod_informer.add_handlers(self._on_pod, lambda old, new: self._on_pod(new), self._on_pod_deleted)
        await self.service_informer.start()
        await self.ca_informer.start()
        await self.pod_informer.start()
        await self.pod_informer.wait_synced(30)
        await self.service_informer.wait_synced(30)
        await self.ca_informer.wait_synced(30)
        self._tasks = [asyncio.create_task(self._heartbeat(), name="node-heartbeat"),
                       asyncio.create_task(self._resync(), name="pod-resync")]
        self._tasks += [asyncio.create_task(self._worker(), name=f"pod-worker-{i}") for i in range(WORKERS)]
        # pods that vanished from the API while the agent was down
        live = {p["metadata"]["uid"] for p in self.pod_informer.list()}
        for uid in self.pods.running_pods():
            if uid not in live:
                self.queue.add(Orphan(uid))
        if self.announcer is not None:
            await self.announcer.start()
        self.ready.set()
        log.info("node %s ready (%s, pods %s)", self.node_name, self.node_ip, self.pod_cidr)

    async def stop(self) -> None:
        """Also after a start() that failed half-way: whatever it opened is closed."""
        if self.announcer is not None:
            try:
                await self.announcer.stop()
            except Exception:
                log.exception("stopping the load-balancer announcer failed")
        self.queue.shutdown()
        await cancel_and_wait(*self._tasks)
        await self.pod_informer.stop()
        await self.service_informer.stop()
        await self.ca_informer.stop()
        if self._streaming_server is not None:
            await self._streaming_server.stop()
        await self.pods.stop()  # pods keep running, as they do when a kubelet restarts
        await self.recorder.flush()

    # ---- node and lease ------------------------------------------------------------

    async def _register(self) -> None:
        node = node_object(self.node_name, self.node_ip, self.pod_cidr, self.port)
        try:
            await self.client.create("v1", "nodes", node)
            self.recorder.event(node, "Normal", "Starting", "Starting kubelet.")
            self.recorder.event(node, "Normal", "NodeReady", f"Node {self.node_name} status is now: NodeReady")
        except errors.APIError as exc:
            if exc.code != 409:
                raise
            await self._post_status()

    async def _post_status(self) -> None:
        now = rfc3339()
        status = node_status(self.node_name, self.node_ip, self.port, str(os.cpu_count() or 1),
                             _mem_total_kib(), now, self._transitions)
        try:
            stored = await self.client.get("v1", "nodes", self.node_name)
        except errors.APIError:
            stored = None
        for c in status["conditions"]:
            before = next((o for o in ((stored or {}).get("status") or {}).get("conditions") or []
                           if o.get("type") == c["type"]), None)
            if before is not None and before.get("status") != c["status"] and c["type"] in self._transitions:
                # the node controller marked it Unknown while this agent was away: a new transition
                c["lastTransitionTime"] = self._transitions[c["type"]] = now
                self.recorder.event(stored, "Normal", CONDITION_EVENTS[c["type"]],
                                    f"Node {self.node_name} status is now: {CONDITION_EVENTS[c['type']]}")
            self._transitions.setdefault(c["type"], c["lastTransitionTime"])
        await self.client.patch("v1", "nodes", self.node_name, {"status": status}, subresource="status",
                                field_manager="kubelet")

    async def _renew_lease(self) -> None:
        now = rfc3339_micro()
        try:
            await self.client.patch("coordination.k8s.io/v1", "leases", self.node_name,
                                    {"spec": {"renewTime": now, "holderIdentity": self.node_name}},
                                    namespace="kube-node-lease", field_manager="kubelet")
        except errors.APIError as exc:
            if exc.code != 404:
                raise
            node = await self.client.get("v1", "nodes", self.node_name)
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.node_name, "namespace": "kube-node-lease",
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                       "uid": node["metadata"]["uid"]}]},
                     "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_SECONDS,
                              "renewTime": now}}
            await self.client.create("coordination.k8s.io/v1", "leases", lease, namespace="kube-node-lease",
                                     field_manager="kubelet")

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self._renew_lease()
                await self._post_status()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    # ---- pods ----------------------------------------------------------------------

    def _on_pod(self, pod: dict) -> None:
        self.recorder.busy()
        m = pod["metadata"]
        if m.get("deletionTimestamp") and m.get("deletionGracePeriodSeconds") is not None:
            # a second delete with a shorter grace period cuts a stop under way short, as the
            # kubelet does; here, as that stop holds the pod's key in the queue until it ends
            self.pods.shorten_grace(m["uid"], int(m["deletionGracePeriodSeconds"]))
        self.queue.add(SyncPod(object_key(pod)))

    def _on_pod_deleted(self, pod: dict) -> None:
        self.queue.add(Orphan(pod["metadata"]["uid"]))

    def _pod_event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        self.recorder.event({"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in pod.items() if k != "kind"}},
                            type_, reason, message)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for pod in self.pod_informer.list():
                self.queue.add(SyncPod(object_key(pod)))

    async def _worker(self) -> None:
        await self.queue.run_worker(self._sync, log)

    async def _sync(self, key: SyncPod | WriteStatus | Orphan) -> None:
        if isinstance(key, WriteStatus):  # the worker's status changed: write it, nothing else
            pod = self.pod_informer.get(key.key)
            if pod is not None and not pod["metadata"].get("deletionTimestamp"):
                await self._write_status(pod)
            return
        if isinstance(key, Orphan):
            uid = key.uid
            if uid in self.pods.running_pods():
                await self.pods.terminate({"metadata": {"uid": uid}}, 0)
            self._statuses.pop(uid, None)
            self._status_locks.pop(uid, None)
            self._ready_mismatch.pop(uid, None)
            self._rejected.discard(uid)
            self._deleted.discard(uid)
            return
        pod = self.pod_informer.get(key.key)
        if pod is None:
            return
        if pod["metadata"].get("deletionTimestamp"):
            await self._finish_deletion(pod)
            return
        uid = pod["metadata"]["uid"]
        if uid not in self.pods.running_pods():
            if uid in self._rejected or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
                return  # refused, or finished before this agent knew it: never (re)started
            refusal = self._admission_refusal(pod)
            if refusal is not None:
                await self._reject(pod, *refusal)
                return
        await self.pods.sync(pod, self.env)
        self._reconcile_ready(pod)
        await self._write_status(pod)

    def _reconcile_ready(self, pod: dict) -> None:
        """The status manager's reconcile: when the stored pod's Ready differs from what this agent
        last wrote and still does a resync later (so it is not a watch lagging behind our own
        write), someone else wrote it (the node lifecycle controller marks the pods of a node it
        lost NotReady): forget the last write, so ours is written again."""
        uid, version = pod["metadata"]["uid"], pod["metadata"].get("resourceVersion")
        written = self._statuses.get(uid)
        if written is None or _ready(pod.get("status")) == _ready(written):
            self._ready_mismatch.pop(uid, None)
        elif self._ready_mismatch.get(uid) == version:
            del self._ready_mismatch[uid]
            del self._statuses[uid]
        else:
            self._ready_mismatch[uid] = version

    def _admission_refusal(self, pod: dict) -> tuple[str, str] | None:
        """(reason, message) if the pod cannot run beside the pods this node runs and that have
        not finished (the kubelet's predicate admit handler, its NodePorts predicate); None to admit.
        No await between this check and PodManager.sync: two new pods cannot both pass."""
        uid = pod["metadata"]["uid"]
        wanted = host_ports(pod.get("spec") or {})
        if not wanted:
            return None
        running = set(self.pods.running_pods())
        used: Counter = Counter()
        for other in self.pod_informer.list():
            other_uid = other["metadata"]["uid"]
            if other_uid == uid or other_uid not in running:
                continue
            status = self.pods.current_status(other_uid) or other.get("status") or {}
            if status.get("phase") not in TERMINAL_PHASES:
                used.update(host_ports(other.get("spec") or {}))
        if ports_conflict(wanted, used):
            return "NodePorts", f"Predicate NodePorts failed: {PORTS_REASON}"
        return None

    async def _reject(self, pod: dict, reason: str, message: str) -> None:
        """The kubelet's rejectPod: a Warning event, and phase Failed with the reason."""
        m = pod["metadata"]
        self._rejected.add(m["uid"])
        self._pod_event(pod, "Warning", reason, message)
        status = {"phase": "Failed", "reason": reason, "message": "Pod was rejected: " + message}
        try:
            await self.client.patch("v1", "pods", m["name"], {"status": status}, namespace=m["namespace"],
                                    subresource="status", field_manager="kubelet")
        except errors.APIError as exc:
            if exc.code != 404:
                raise

    async def _write_status(self, pod: dict) -> None:
        """Write the pod's current status if it changed since the last write and its worker
        has reported; one write per pod at a time, so they never land out of order. A null
        field and a missing one are the same (the conditions the kubelet does not own are
        copied from the stored pod, where the patch's `"lastProbeTime": null` left no key)."""
        m = pod["metadata"]
        uid = m["uid"]
        async with self._status_locks.setdefault(uid, asyncio.Lock()):
            status = self.pods.current_status(uid)
            if status is None or not self.pods.reported(uid):
                return
            compared = without_nulls(status)
            if compared == self._statuses.get(uid):
                return
            self.recorder.busy()
            try:
                await self.client.patch("v1", "pods", m["name"], {"status": status}, namespace=m["namespace"],
                                        subresource="status", field_manager="kubelet")
                self._statuses[uid] = compared
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
            finally:
                self.recorder.busy()

    async def _write_final_status(self, pod: dict, status: dict) -> None:
        m = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", m["name"], {"metadata": {"uid": m["uid"]}, "status": status},
                                    namespace=m["namespace"], subresource="status", field_manager="kubelet")
        except errors.APIError as exc:
            if exc.code not in (404, 409):
                raise

    async def _finish_deletion(self, pod: dict) -> None:
        m = pod["metadata"]
        uid = m["uid"]
        if uid in self._terminating or uid in self._deleted:
            return  # the final status write's own watch event brings the pod back here once more
        self._terminating.add(uid)
        try:
            grace = m.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if uid in self.pods.running_pods():
                final = await self.pods.terminate(pod, int(grace))
                if final is not None:  # the terminal phase first, as the kubelet writes it before the pod goes
                    await self._write_final_status(pod, final)
            try:
                await self.client.delete("v1", "pods", m["name"], namespace=m["namespace"], grace_period_seconds=0,
                                         preconditions={"uid": uid})
            except errors.APIError as exc:
                if exc.code not in (404, 409):
                    raise
            self._deleted.add(uid)
            self._statuses.pop(uid, None)
            self._status_locks.pop(uid, None)
        finally:
            self._terminating.discard(uid)


def _ready(status: dict | None) -> str | None:
    return next((c.get("status") for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


def _mem_total_kib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 4 * 1024 * 1024


def _read_first(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or default
    except OSError:
        return default


def _machine_id() -> str:
    return _read_first("/etc/machine-id", "0" * 32)


def _boot_id() -> str:
    return _read_first("/proc/sys/kernel/random/boot_id", "00000000-0000-0000-0000-000000000000")


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
