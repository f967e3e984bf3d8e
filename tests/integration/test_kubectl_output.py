"""What the real kubectl 1.32 prints against pocketkube, pinned to what it prints against a
real Kubernetes 1.32 cluster holding the same objects.

One scenario (namespace `shop`) is built the way a cluster's components build it: users
`kubectl apply` their manifests; what the deployment controller, the endpoint(slice)
controllers, the scheduler, the kubelet, the cloud provider and the event recorders write
is created here with their content and written through `/status`, as they do. Then every
`kubectl get` / `-o wide` / `-o yaml` / `describe` view is compared with the exact text a
real cluster prints for it. Only what must vary is normalised: AGE cells of objects made
during the run, uids, resourceVersions, creation timestamps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import textwrap

import pytest
import yaml

@pytest.fixture(scope="module")
def server(api_server):
    """The API server alone: these tests write by hand what controllers and kubelets would,
    to pin exactly what kubectl prints for each kind."""
    return api_server

pytestmark = pytest.mark.kubectl

NS = "shop"
# The scenario's clock: set when the scenario is built. Times in the past are placed 5 s
# past a whole minute, so their printed age ("30m", "2d") holds for the next 55 s.
CLOCK = [dt.datetime.now(dt.timezone.utc)]


def ago(**delta: float) -> str:
    """An RFC 3339 time `delta` (+5 s) before the scenario was built."""
    return (CLOCK[0] - dt.timedelta(**delta) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_ago(**delta: float) -> str:
    """The same as a MicroTime (eventTime)."""
    return (CLOCK[0] - dt.timedelta(**delta) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- what users apply ------------------------------------------------------------------

MANIFESTS = f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels: {{team: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NS}
  labels: {{app: web}}
spec:
  replicas: 5
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
  labels: {{app: web}}
spec:
  clusterIP: 10.96.100.10
  selector: {{app: web}}
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
  namespace: {NS}
spec:
  type: NodePort
  clusterIP: 10.96.100.11
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 80
    nodePort: 30080
---
apiVersion: v1
kind: Service
metadata:
  name: web-lb
  namespace: {NS}
spec:
  type: LoadBalancer
  clusterIP: 10.96.100.12
  selector: {{app: web}}
  sessionAffinity: ClientIP
  ports:
  - name: http
    port: 80
    targetPort: 80
    nodePort: 30081
  - name: https
    port: 443
    targetPort: 8443
    nodePort: 30443
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: {NS}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports:
  - port: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: ext
  namespace: {NS}
spec:
  type: ExternalName
  externalName: example.com
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: {NS}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: {NS}
type: Opaque
stringData:
  user: admin
  pass: hunter2
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bot
  namespace: {NS}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: {NS}
spec:
  ingressClassName: nginx
  tls:
  - hosts: [shop.example.com]
    secretName: shop-tls
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
      - path: /api
        pathType: Prefix
        backend:
          service:
            name: api
            port:
              name: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: {NS}
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      containers:
      - name: postgres
        image: postgres:16
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: {NS}
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      nodeSelector: {{kubernetes.io/os: linux}}
      containers:
      - name: agent
        image: busybox:1.36
        command: [sleep, infinity]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: leader
  namespace: {NS}
spec:
  holderIdentity: node-1
  leaseDurationSeconds: 15
"""


# --- what the cluster's components write -------------------------------------------------

RS = "web-7c5ddbdf54"
POD_HASH = "7c5ddbdf54"
POD_SUFFIXES = ["2xkqf", "8hjzm", "b9nqw", "h4tcl", "x7pvd"]  # the last one crash-loops
PODS = [f"{RS}-{s}" for s in POD_SUFFIXES]
POD_IPS = [f"10.244.{1 + i % 2}.{11 + i}" for i in range(len(PODS))]
POD_NODES = [f"node-{1 + i % 2}" for i in range(len(PODS))]


def node_manifest(name: str, ip: str, roles: list[str]) -> dict:
    labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux"}
    labels.update({f"node-role.kubernetes.io/{r}": "" for r in roles})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                         "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": {"podCIDR": f"10.244.{name[-1]}.0/24", "podCIDRs": [f"10.244.{name[-1]}.0/24"]}}


def node_status(ip: str, name: str, ready: bool) -> dict:
    heartbeat = ago(seconds=30)
    transition = ago(days=2)

    def condition(type_: str, status: str, reason: str, message: str) -> dict:
        return {"type": type_, "status": status, "lastHeartbeatTime": heartbeat,
                "lastTransitionTime": transition, "reason": reason, "message": message}

    return {"status": {
        "capacity": {"cpu": "2", "ephemeral-storage": "61202244Ki", "hugepages-2Mi": "0",
                     "memory": "8129452Ki", "pods": "110"},
        "allocatable": {"cpu": "2", "ephemeral-storage": "61202244Ki", "hugepages-2Mi": "0",
                        "memory": "8129452Ki", "pods": "110"},
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready else
            condition("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
        ],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": "5f3c0d6e8b2a4c1e9d7f6a5b4c3d2e1f", "systemUUID": "5f3c0d6e-8b2a-4c1e-9d7f-6a5b4c3d2e1f",
                     "bootID": "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6", "kernelVersion": "6.1.0-28-amd64",
                     "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.24",
                     "kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
                     "operatingSystem": "linux", "architecture": "amd64"},
    }}


def node_lease(name: str) -> dict:
    """The kubelet's heartbeat Lease in kube-node-lease."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_ago(seconds=5)}}


def replica_set_manifest(deploy_uid: str) -> dict:
    labels = {"app": "web", "pod-template-hash": POD_HASH}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": RS, "namespace": NS, "labels": labels,
                         "annotations": {"deployment.kubernetes.io/desired-replicas": "5",
                                         "deployment.kubernetes.io/max-replicas": "7",
                                         "deployment.kubernetes.io/revision": "1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                              "uid": deploy_uid, "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": 5, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                                                           "ports": [{"containerPort": 80, "name": "http"}]}]}}}}


def pod_manifest(index: int, rs_uid: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": PODS[index], "namespace": NS,
                         "labels": {"app": "web", "pod-template-hash": POD_HASH},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": RS,
                                              "uid": rs_uid, "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": POD_NODES[index],
                     "containers": [{"name": "nginx", "image": "nginx:1.27",
                                     "ports": [{"containerPort": 80, "name": "http"}]}]}}


def pod_status(index: int) -> dict:
    started = ago(minutes=30)
    crashing = index == len(PODS) - 1
    ready = "False" if crashing else "True"

    def condition(type_: str, status: str) -> dict:
        extra = {"reason": "ContainersNotReady",
                 "message": "containers with unready status: [nginx]"} if status == "False" else {}
        return {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": started, **extra}

    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff",
                             "message": "back-off 2m40s restarting failed container=nginx "
                                        f"pod={PODS[index]}_{NS}(0b9c7c38-0d0f-4b7e-9a61-3f1f6c1e2d4a)"}}
        last_state = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(minutes=20, seconds=10),
                                     "finishedAt": ago(minutes=20),
                                     "containerID": "containerd://" + "ab" * 32}}
        restarts = 4
    else:
        state = {"running": {"startedAt": started}}
        last_state = {}
        restarts = 0
    return {"status": {
        "phase": "Running",
        "conditions": [condition("PodReadyToStartContainers", "True"), condition("Initialized", "True"),
                       condition("Ready", ready), condition("ContainersReady", ready),
                       condition("PodScheduled", "True")],
        "hostIP": f"172.18.0.{1 + int(POD_NODES[index][-1])}",
        "hostIPs": [{"ip": f"172.18.0.{1 + int(POD_NODES[index][-1])}"}],
        "podIP": POD_IPS[index], "podIPs": [{"ip": POD_IPS[index]}],
        "startTime": started,
        "containerStatuses": [{
            "name": "nginx", "state": state, "lastState": last_state, "ready": not crashing,
            "restartCount": restarts, "image": "docker.io/library/nginx:1.27",
            "imageID": "docker.io/library/nginx@sha256:" + "0f" * 32,
            "containerID": "containerd://" + f"{index:02d}" * 32, "started": not crashing}],
        "qosClass": "BestEffort",
    }}


def endpoints_manifest(name: str, port: dict | None) -> dict:
    ready = [i for i in range(len(PODS)) if i != len(PODS) - 1]

    def address(i: int) -> dict:
        return {"ip": POD_IPS[i], "nodeName": POD_NODES[i],
                "targetRef": {"kind": "Pod", "namespace": NS, "name": PODS[i], "uid": f"uid-{i}"}}

    subsets = []
    if port is not None:
        subsets = [{"addresses": [address(i) for i in ready], "notReadyAddresses": [address(len(PODS) - 1)],
                    "ports": [port]}]
    body = {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"} if name == "web" else {},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": ago(minutes=20)}}}
    if subsets:
        body["subsets"] = subsets
    return body


def endpoint_slice_manifest(service: str, suffix: str, ports: list[dict] | None) -> dict:
    endpoints = None
    if ports is not None:
        endpoints = [{"addresses": [POD_IPS[i]],
                      "conditions": {"ready": i != len(PODS) - 1, "serving": i != len(PODS) - 1,
                                     "terminating": False},
                      "nodeName": POD_NODES[i],
                      "targetRef": {"kind": "Pod", "namespace": NS, "name": PODS[i], "uid": f"uid-{i}"}}
                     for i in range(len(PODS))]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{suffix}", "namespace": NS,
                         "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                                    "kubernetes.io/service-name": service},
                         "generateName": f"{service}-"},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def core_event(name: str, kind: str, obj: str, uid: str, reason: str, message: str, source: dict, *,
               type_: str = "Normal", first: str, last: str, count: int = 1, api: str = "v1",
               field_path: str | None = None) -> dict:
    involved = {"kind": kind, "namespace": NS, "name": obj, "uid": uid, "apiVersion": api}
    if field_path:
        involved["fieldPath"] = field_path
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": NS},
            "involvedObject": involved, "reason": reason, "message": message, "source": source,
            "firstTimestamp": first, "lastTimestamp": last, "count": count, "type": type_,
            "eventTime": None, "reportingComponent": source.get("component", ""),
            "reportingInstance": source.get("host", "")}


def events_v1_event(name: str, obj: str, uid: str, reason: str, note: str, *, controller: str,
                    instance: str, action: str, type_: str = "Normal") -> dict:
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name, "namespace": NS},
            "eventTime": micro_ago(minutes=30), "reportingController": controller,
            "reportingInstance": instance, "action": action, "reason": reason,
            "regarding": {"kind": "Pod", "namespace": NS, "name": obj, "uid": uid, "apiVersion": "v1"},
            "note": note, "type": type_}


def scenario_events(uids: dict[str, str]) -> list[dict]:
    kubelet = {"component": "kubelet", "host": POD_NODES[-1]}
    crash = PODS[-1]
    pod_uid = uids[crash]
    return [
        core_event("web.18123a1f0c6d2e01", "Deployment", "web", uids["web"], "ScalingReplicaSet",
                   f"Scaled up replica set {RS} to 5", {"component": "deployment-controller"},
                   first=ago(minutes=30), last=ago(minutes=30), api="apps/v1"),
        core_event(f"{RS}.18123a1f0d1e2f02", "ReplicaSet", RS, uids[RS], "SuccessfulCreate",
                   f"Created pod: {PODS[0]}", {"component": "replicaset-controller"},
                   first=ago(minutes=30), last=ago(minutes=30), api="apps/v1"),
        core_event(f"{crash}.18123a1f1a2b3c04", "Pod", crash, pod_uid, "Pulled",
                   'Container image "nginx:1.27" already present on machine', kubelet,
                   first=ago(minutes=30), last=ago(minutes=22), count=5, field_path="spec.containers{nginx}"),
        core_event(f"{crash}.18123a1f1b2c3d05", "Pod", crash, pod_uid, "Created", "Created container nginx", kubelet,
                   first=ago(minutes=30), last=ago(minutes=21), count=5, field_path="spec.containers{nginx}"),
        core_event(f"{crash}.18123a1f1c3d4e06", "Pod", crash, pod_uid, "Started", "Started container nginx", kubelet,
                   first=ago(minutes=30), last=ago(minutes=20), count=5, field_path="spec.containers{nginx}"),
        core_event(f"{crash}.18123a1f1d4e5f07", "Pod", crash, pod_uid, "BackOff",
                   f"Back-off restarting failed container nginx in pod {crash}_{NS}({pod_uid})", kubelet,
                   type_="Warning", first=ago(minutes=29), last=ago(minutes=12), count=90,
                   field_path="spec.containers{nginx}"),
    ]


def kubectl_create(server, obj: dict) -> dict:
    return json.loads(server.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout)


def write_status(server, resource: str, name: str, status: dict, namespaced: bool = True) -> None:
    """What a controller or the kubelet does: a merge patch of /status."""
    ns_args = ["-n", NS] if namespaced else []
    server.kubectl("patch", resource, name, *ns_args, "--subresource=status", "--type=merge",
                   "-p", json.dumps(status))


def build_scenario(server) -> None:
    CLOCK[0] = dt.datetime.now(dt.timezone.utc)
    server.kubectl("apply", "-f", "-", input=MANIFESTS)

    for name, ip, roles, ready in (("node-1", "172.18.0.2", ["control-plane"], True),
                                   ("node-2", "172.18.0.3", [], True),
                                   ("node-3", "172.18.0.4", [], False)):
        kubectl_create(server, node_manifest(name, ip, roles))
        write_status(server, "node", name, node_status(ip, name, ready), namespaced=False)
        kubectl_create(server, node_lease(name))
    server.kubectl("cordon", "node-2")
    # the node lifecycle controller taints what is cordoned
    server.kubectl("taint", "node", "node-2", "node.kubernetes.io/unschedulable:NoSchedule")

    uids = {"web": server.kubectl_json("get", "deploy", "web", "-n", NS)["metadata"]["uid"]}
    uids[RS] = rs_uid = kubectl_create(server, replica_set_manifest(uids["web"]))["metadata"]["uid"]
    write_status(server, "rs", RS, {"status": {"replicas": 5, "fullyLabeledReplicas": 5, "readyReplicas": 4,
                                               "availableReplicas": 4, "observedGeneration": 1}})
    for i in range(len(PODS)):
        uids[PODS[i]] = kubectl_create(server, pod_manifest(i, rs_uid))["metadata"]["uid"]
        write_status(server, "pod", PODS[i], pod_status(i))
    server.kubectl("annotate", "deploy", "web", "-n", NS, "deployment.kubernetes.io/revision=1")
    write_status(server, "deploy", "web", {"status": {
        "observedGeneration": 1, "replicas": 5, "updatedReplicas": 5, "readyReplicas": 4,
        "availableReplicas": 4, "unavailableReplicas": 1,
        "conditions": [
            {"type": "Progressing", "status": "True", "lastUpdateTime": ago(minutes=29),
             "lastTransitionTime": ago(minutes=30), "reason": "NewReplicaSetAvailable",
             "message": f'ReplicaSet "{RS}" has successfully progressed.'},
            {"type": "Available", "status": "True", "lastUpdateTime": ago(minutes=29),
             "lastTransitionTime": ago(minutes=29), "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."}]}})

    http = {"name": "http", "port": 80, "protocol": "TCP"}
    kubectl_create(server, endpoints_manifest("web", http))
    kubectl_create(server, endpoints_manifest("web-np", {"port": 80, "protocol": "TCP"}))
    kubectl_create(server, endpoints_manifest("db", None))
    kubectl_create(server, endpoint_slice_manifest("web", "x2fkq", [http]))
    kubectl_create(server, endpoint_slice_manifest("web-np", "7mzlr", [{"name": "", "port": 80, "protocol": "TCP"}]))
    kubectl_create(server, endpoint_slice_manifest("web-lb", "q8vtn", [
        {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 8443, "protocol": "TCP"}]))
    kubectl_create(server, endpoint_slice_manifest("db", "d4n9c", None))

    write_status(server, "svc", "web-lb", {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}})
    write_status(server, "ingress", "web", {"status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.2"}]}}})
    write_status(server, "sts", "db", {"status": {"observedGeneration": 1, "replicas": 0, "availableReplicas": 0}})

    for event in scenario_events(uids):
        kubectl_create(server, event)
    kubectl_create(server, events_v1_event(f"{PODS[-1]}.18123a1f0e0f1003", PODS[-1], uids[PODS[-1]], "Scheduled",
                                           f"Successfully assigned {NS}/{PODS[-1]} to {POD_NODES[-1]}",
                                           controller="default-scheduler",
                                           instance="default-scheduler-node-1", action="Binding"))


@pytest.fixture(scope="module")
def shop(server):
    build_scenario(server)
    return server


# --- normalising what must vary -----------------------------------------------------------

_SECONDS_AGE = re.compile(r"(?<=\s)\d{1,2}s( *)(?=\s|$)", re.M)
_RFC1123Z = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RESOURCE_VERSION = re.compile(r'(resourceVersion: |Resource Version:\s+)"?\d+"?')


def normalise(text: str) -> str:
    """Ages under 100 s (objects made by this run) become AGE; dates, times and uids become
    fixed text of the same width, so the column alignment kubectl computed is kept."""
    text = _SECONDS_AGE.sub(lambda m: "AGE" + " " * (len(m.group(0)) - 3), text)
    text = _RFC1123Z.sub("Mon, 01 Jan 2001 00:00:00 +0000", text)
    text = _RFC3339.sub(lambda m: "2001-01-01T00:00:00Z" if not m.group(1) else "2001-01-01T00:00:00.000000Z", text)
    text = _UUID.sub("00000000-0000-0000-0000-000000000000", text)
    return _RESOURCE_VERSION.sub(lambda m: m.group(1) + '"RV"', text)


def out(server, *args: str) -> str:
    """kubectl's stdout, normalised; anything on stderr fails the test (kubectl warns there)."""
    cp = server.kubectl(*args)
    assert cp.stderr == "", cp.stderr
    return normalise(cp.stdout)


def expect(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def sorted_lines(text: str) -> list[str]:
    return sorted(text.splitlines())



def test_get_namespace_shop(shop):
    assert out(shop, 'get', 'ns', 'shop', '--show-labels') == expect("""
        NAME   STATUS   AGE   LABELS
        shop   Active   AGE   kubernetes.io/metadata.name=shop,team=web
        """)


def test_get_services(shop):
    assert out(shop, 'get', 'svc', '-n', 'shop') == expect("""
        NAME     TYPE           CLUSTER-IP     EXTERNAL-IP      PORT(S)                      AGE
        db       ClusterIP      None           <none>           5432/TCP                     AGE
        ext      ExternalName   <none>         example.com      <none>                       AGE
        web      ClusterIP      10.96.100.10   <none>           80/TCP                       AGE
        web-lb   LoadBalancer   10.96.100.12   172.18.255.200   80:30081/TCP,443:30443/TCP   AGE
        web-np   NodePort       10.96.100.11   <none>           80:30080/TCP                 AGE
        """)


def test_get_services_wide(shop):
    assert out(shop, 'get', 'svc', '-n', 'shop', '-o', 'wide') == expect("""
        NAME     TYPE           CLUSTER-IP     EXTERNAL-IP      PORT(S)                      AGE   SELECTOR
        db       ClusterIP      None           <none>           5432/TCP                     AGE   app=db
        ext      ExternalName   <none>         example.com      <none>                       AGE   <none>
        web      ClusterIP      10.96.100.10   <none>           80/TCP                       AGE   app=web
        web-lb   LoadBalancer   10.96.100.12   172.18.255.200   80:30081/TCP,443:30443/TCP   AGE   app=web
        web-np   NodePort       10.96.100.11   <none>           80:30080/TCP                 AGE   app=web
        """)


def test_get_endpoints(shop):
    assert out(shop, 'get', 'ep', '-n', 'shop') == expect("""
        NAME     ENDPOINTS                                                  AGE
        db       <none>                                                     AGE
        web      10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...   AGE
        web-np   10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...   AGE
        """)


def test_get_endpointslices(shop):
    assert out(shop, 'get', 'endpointslices', '-n', 'shop') == expect("""
        NAME           ADDRESSTYPE   PORTS     ENDPOINTS                                         AGE
        db-d4n9c       IPv4          <unset>   <unset>                                           AGE
        web-lb-q8vtn   IPv4          80,8443   10.244.1.11,10.244.2.12,10.244.1.13 + 2 more...   AGE
        web-np-7mzlr   IPv4          80        10.244.1.11,10.244.2.12,10.244.1.13 + 2 more...   AGE
        web-x2fkq      IPv4          80        10.244.1.11,10.244.2.12,10.244.1.13 + 2 more...   AGE
        """)


def test_get_ingress(shop):
    assert out(shop, 'get', 'ing', '-n', 'shop') == expect("""
        NAME   CLASS   HOSTS              ADDRESS      PORTS     AGE
        web    nginx   shop.example.com   172.18.0.2   80, 443   AGE
        """)


def test_get_ingressclass(shop):
    assert out(shop, 'get', 'ingressclass') == expect("""
        NAME    CONTROLLER             PARAMETERS   AGE
        nginx   k8s.io/ingress-nginx   <none>       AGE
        """)


def test_get_nodes(shop):
    assert out(shop, 'get', 'nodes') == expect("""
        NAME     STATUS                     ROLES           AGE   VERSION
        node-1   Ready                      control-plane   AGE   v1.32.0
        node-2   Ready,SchedulingDisabled   <none>          AGE   v1.32.0
        node-3   NotReady                   <none>          AGE   v1.32.0
        """)


def test_get_nodes_wide(shop):
    assert out(shop, 'get', 'nodes', '-o', 'wide') == expect("""
        NAME     STATUS                     ROLES           AGE   VERSION   INTERNAL-IP   EXTERNAL-IP   OS-IMAGE                         KERNEL-VERSION   CONTAINER-RUNTIME
        node-1   Ready                      control-plane   AGE   v1.32.0   172.18.0.2    <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-28-amd64   containerd://1.7.24
        node-2   Ready,SchedulingDisabled   <none>          AGE   v1.32.0   172.18.0.3    <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-28-amd64   containerd://1.7.24
        node-3   NotReady                   <none>          AGE   v1.32.0   172.18.0.4    <none>        Debian GNU/Linux 12 (bookworm)   6.1.0-28-amd64   containerd://1.7.24
        """)


def test_get_pods_wide(shop):
    assert out(shop, 'get', 'pods', '-n', 'shop', '-o', 'wide') == expect("""
        NAME                   READY   STATUS             RESTARTS      AGE   IP            NODE     NOMINATED NODE   READINESS GATES
        web-7c5ddbdf54-2xkqf   1/1     Running            0             AGE   10.244.1.11   node-1   <none>           <none>
        web-7c5ddbdf54-8hjzm   1/1     Running            0             AGE   10.244.2.12   node-2   <none>           <none>
        web-7c5ddbdf54-b9nqw   1/1     Running            0             AGE   10.244.1.13   node-1   <none>           <none>
        web-7c5ddbdf54-h4tcl   1/1     Running            0             AGE   10.244.2.14   node-2   <none>           <none>
        web-7c5ddbdf54-x7pvd   0/1     CrashLoopBackOff   4 (20m ago)   AGE   10.244.1.15   node-1   <none>           <none>
        """)


def test_get_deployments_wide(shop):
    assert out(shop, 'get', 'deploy', '-n', 'shop', '-o', 'wide') == expect("""
        NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES       SELECTOR
        web    4/5     5            4           AGE   nginx        nginx:1.27   app=web
        """)


def test_get_replicasets_wide(shop):
    assert out(shop, 'get', 'rs', '-n', 'shop', '-o', 'wide') == expect("""
        NAME             DESIRED   CURRENT   READY   AGE   CONTAINERS   IMAGES       SELECTOR
        web-7c5ddbdf54   5         5         4       AGE   nginx        nginx:1.27   app=web,pod-template-hash=7c5ddbdf54
        """)


def test_get_statefulsets_wide(shop):
    assert out(shop, 'get', 'sts', '-n', 'shop', '-o', 'wide') == expect("""
        NAME   READY   AGE   CONTAINERS   IMAGES
        db     0/2     AGE   postgres     postgres:16
        """)


def test_get_daemonsets_wide(shop):
    assert out(shop, 'get', 'ds', '-n', 'shop', '-o', 'wide') == expect("""
        NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR            AGE   CONTAINERS   IMAGES         SELECTOR
        agent   0         0         0       0            0           kubernetes.io/os=linux   AGE   agent        busybox:1.36   app=agent
        """)


def test_get_configmaps_secrets_serviceaccounts_leases(shop):
    assert out(shop, 'get', 'cm,secret,sa,lease', '-n', 'shop') == expect("""
        NAME            DATA   AGE
        configmap/cfg   1      AGE

        NAME           TYPE     DATA   AGE
        secret/creds   Opaque   2      AGE

        NAME                 SECRETS   AGE
        serviceaccount/bot   0         AGE

        NAME                               HOLDER   AGE
        lease.coordination.k8s.io/leader   node-1   AGE
        """)


def test_get_events_wide(shop):
    # the scheduler's events.k8s.io event is left out: see test_events_of_both_apis_are_one_list
    assert out(shop, 'get', 'events', '-n', 'shop', '-o', 'wide', '--field-selector', 'reason!=Scheduled') == expect("""
        LAST SEEN   TYPE      REASON              OBJECT                      SUBOBJECT                SOURCE                  MESSAGE                                                                                                             FIRST SEEN   COUNT   NAME
        22m         Normal    Pulled              pod/web-7c5ddbdf54-x7pvd    spec.containers{nginx}   kubelet, node-1         Container image "nginx:1.27" already present on machine                                                             30m          5       web-7c5ddbdf54-x7pvd.18123a1f1a2b3c04
        21m         Normal    Created             pod/web-7c5ddbdf54-x7pvd    spec.containers{nginx}   kubelet, node-1         Created container nginx                                                                                             30m          5       web-7c5ddbdf54-x7pvd.18123a1f1b2c3d05
        20m         Normal    Started             pod/web-7c5ddbdf54-x7pvd    spec.containers{nginx}   kubelet, node-1         Started container nginx                                                                                             30m          5       web-7c5ddbdf54-x7pvd.18123a1f1c3d4e06
        12m         Warning   BackOff             pod/web-7c5ddbdf54-x7pvd    spec.containers{nginx}   kubelet, node-1         Back-off restarting failed container nginx in pod web-7c5ddbdf54-x7pvd_shop(00000000-0000-0000-0000-000000000000)   29m          90      web-7c5ddbdf54-x7pvd.18123a1f1d4e5f07
        30m         Normal    SuccessfulCreate    replicaset/web-7c5ddbdf54                            replicaset-controller   Created pod: web-7c5ddbdf54-2xkqf                                                                                   30m          1       web-7c5ddbdf54.18123a1f0d1e2f02
        30m         Normal    ScalingReplicaSet   deployment/web                                       deployment-controller   Scaled up replica set web-7c5ddbdf54 to 5                                                                           30m          1       web.18123a1f0c6d2e01
        """)


def test_get_all(shop):
    assert out(shop, 'get', 'all', '-n', 'shop') == expect("""
        NAME                       READY   STATUS             RESTARTS      AGE
        pod/web-7c5ddbdf54-2xkqf   1/1     Running            0             AGE
        pod/web-7c5ddbdf54-8hjzm   1/1     Running            0             AGE
        pod/web-7c5ddbdf54-b9nqw   1/1     Running            0             AGE
        pod/web-7c5ddbdf54-h4tcl   1/1     Running            0             AGE
        pod/web-7c5ddbdf54-x7pvd   0/1     CrashLoopBackOff   4 (20m ago)   AGE

        NAME             TYPE           CLUSTER-IP     EXTERNAL-IP      PORT(S)                      AGE
        service/db       ClusterIP      None           <none>           5432/TCP                     AGE
        service/ext      ExternalName   <none>         example.com      <none>                       AGE
        service/web      ClusterIP      10.96.100.10   <none>           80/TCP                       AGE
        service/web-lb   LoadBalancer   10.96.100.12   172.18.255.200   80:30081/TCP,443:30443/TCP   AGE
        service/web-np   NodePort       10.96.100.11   <none>           80:30080/TCP                 AGE

        NAME                  READY   UP-TO-DATE   AVAILABLE   AGE
        deployment.apps/web   4/5     5            4           AGE

        NAME                             DESIRED   CURRENT   READY   AGE
        replicaset.apps/web-7c5ddbdf54   5         5         4       AGE

        NAME                  READY   AGE
        statefulset.apps/db   0/2     AGE

        NAME                   DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR            AGE
        daemonset.apps/agent   0         0         0       0            0           kubernetes.io/os=linux   AGE
        """)


def test_describe_service_clusterip(shop):
    assert out(shop, 'describe', 'svc', '-n', 'shop', 'web') == expect("""
        Name:                     web
        Namespace:                shop
        Labels:                   app=web
        Annotations:              <none>
        Selector:                 app=web
        Type:                     ClusterIP
        IP Family Policy:         SingleStack
        IP Families:              IPv4
        IP:                       10.96.100.10
        IPs:                      10.96.100.10
        Port:                     http  80/TCP
        TargetPort:               http/TCP
        Endpoints:                10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...
        Session Affinity:         None
        Internal Traffic Policy:  Cluster
        Events:                   <none>
        """)


def test_describe_service_nodeport(shop):
    assert out(shop, 'describe', 'svc', '-n', 'shop', 'web-np') == expect("""
        Name:                     web-np
        Namespace:                shop
        Labels:                   <none>
        Annotations:              <none>
        Selector:                 app=web
        Type:                     NodePort
        IP Family Policy:         SingleStack
        IP Families:              IPv4
        IP:                       10.96.100.11
        IPs:                      10.96.100.11
        Port:                     <unset>  80/TCP
        TargetPort:               80/TCP
        NodePort:                 <unset>  30080/TCP
        Endpoints:                10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...
        Session Affinity:         None
        External Traffic Policy:  Cluster
        Internal Traffic Policy:  Cluster
        Events:                   <none>
        """)


def test_describe_service_loadbalancer(shop):
    assert out(shop, 'describe', 'svc', '-n', 'shop', 'web-lb') == expect("""
        Name:                     web-lb
        Namespace:                shop
        Labels:                   <none>
        Annotations:              <none>
        Selector:                 app=web
        Type:                     LoadBalancer
        IP Family Policy:         SingleStack
        IP Families:              IPv4
        IP:                       10.96.100.12
        IPs:                      10.96.100.12
        LoadBalancer Ingress:     172.18.255.200 (VIP)
        Port:                     http  80/TCP
        TargetPort:               80/TCP
        NodePort:                 http  30081/TCP
        Endpoints:                10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...
        Port:                     https  443/TCP
        TargetPort:               8443/TCP
        NodePort:                 https  30443/TCP
        Endpoints:                10.244.1.11:8443,10.244.2.12:8443,10.244.1.13:8443 + 1 more...
        Session Affinity:         ClientIP
        External Traffic Policy:  Cluster
        Internal Traffic Policy:  Cluster
        Events:                   <none>
        """)


def test_describe_service_headless(shop):
    assert out(shop, 'describe', 'svc', '-n', 'shop', 'db') == expect("""
        Name:                     db
        Namespace:                shop
        Labels:                   <none>
        Annotations:              <none>
        Selector:                 app=db
        Type:                     ClusterIP
        IP Family Policy:         SingleStack
        IP Families:              IPv4
        IP:                       None
        IPs:                      None
        Port:                     <unset>  5432/TCP
        TargetPort:               5432/TCP
        Endpoints:                
        Session Affinity:         None
        Internal Traffic Policy:  Cluster
        Events:                   <none>
        """)


def test_describe_service_externalname(shop):
    assert out(shop, 'describe', 'svc', '-n', 'shop', 'ext') == expect("""
        Name:              ext
        Namespace:         shop
        Labels:            <none>
        Annotations:       <none>
        Selector:          <none>
        Type:              ExternalName
        IP Families:       <none>
        IP:                
        IPs:               <none>
        External Name:     example.com
        Session Affinity:  None
        Events:            <none>
        """)


def test_describe_endpoints(shop):
    assert out(shop, 'describe', 'ep', '-n', 'shop', 'web', 'db') == expect("""
        Name:         web
        Namespace:    shop
        Labels:       app=web
        Annotations:  endpoints.kubernetes.io/last-change-trigger-time: 2001-01-01T00:00:00Z
        Subsets:
          Addresses:          10.244.1.11,10.244.2.12,10.244.1.13,10.244.2.14
          NotReadyAddresses:  10.244.1.15
          Ports:
            Name  Port  Protocol
            ----  ----  --------
            http  80    TCP

        Events:  <none>


        Name:         db
        Namespace:    shop
        Labels:       <none>
        Annotations:  endpoints.kubernetes.io/last-change-trigger-time: 2001-01-01T00:00:00Z
        Subsets:
        Events:  <none>
        """)


def test_describe_endpointslice(shop):
    assert out(shop, 'describe', 'endpointslice', '-n', 'shop', 'web-np-7mzlr', 'db-d4n9c') == expect("""
        Name:         web-np-7mzlr
        Namespace:    shop
        Labels:       endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io
                      kubernetes.io/service-name=web-np
        Annotations:  <none>
        AddressType:  IPv4
        Ports:
          Name     Port  Protocol
          ----     ----  --------
          <unset>  80    TCP
        Endpoints:
          - Addresses:  10.244.1.11
            Conditions:
              Ready:    true
            Hostname:   <unset>
            TargetRef:  Pod/web-7c5ddbdf54-2xkqf
            NodeName:   node-1
            Zone:       <unset>
          - Addresses:  10.244.2.12
            Conditions:
              Ready:    true
            Hostname:   <unset>
            TargetRef:  Pod/web-7c5ddbdf54-8hjzm
            NodeName:   node-2
            Zone:       <unset>
          - Addresses:  10.244.1.13
            Conditions:
              Ready:    true
            Hostname:   <unset>
            TargetRef:  Pod/web-7c5ddbdf54-b9nqw
            NodeName:   node-1
            Zone:       <unset>
          - Addresses:  10.244.2.14
            Conditions:
              Ready:    true
            Hostname:   <unset>
            TargetRef:  Pod/web-7c5ddbdf54-h4tcl
            NodeName:   node-2
            Zone:       <unset>
          - Addresses:  10.244.1.15
            Conditions:
              Ready:    false
            Hostname:   <unset>
            TargetRef:  Pod/web-7c5ddbdf54-x7pvd
            NodeName:   node-1
            Zone:       <unset>
        Events:         <none>


        Name:         db-d4n9c
        Namespace:    shop
        Labels:       endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io
                      kubernetes.io/service-name=db
        Annotations:  <none>
        AddressType:  IPv4
        Ports: <unset>
        Endpoints: <none>
        Events:  <none>
        """)


def test_describe_ingress(shop):
    assert out(shop, 'describe', 'ing', '-n', 'shop', 'web') == expect("""
        Name:             web
        Labels:           <none>
        Namespace:        shop
        Address:          172.18.0.2
        Ingress Class:    nginx
        Default backend:  <default>
        TLS:
          shop-tls terminates shop.example.com
        Rules:
          Host              Path  Backends
          ----              ----  --------
          shop.example.com  
                            /      web:80 (10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...)
                            /api   api:http (<error: services "api" not found>)
        Annotations:        <none>
        Events:             <none>
        """)


def test_describe_ingressclass(shop):
    assert out(shop, 'describe', 'ingressclass', 'nginx') == expect("""
        Name:         nginx
        Labels:       <none>
        Annotations:  <none>
        Controller:   k8s.io/ingress-nginx
        Events:       <none>
        """)


def test_describe_deployment(shop):
    assert out(shop, 'describe', 'deploy', '-n', 'shop', 'web') == expect("""
        Name:                   web
        Namespace:              shop
        CreationTimestamp:      Mon, 01 Jan 2001 00:00:00 +0000
        Labels:                 app=web
        Annotations:            deployment.kubernetes.io/revision: 1
        Selector:               app=web
        Replicas:               5 desired | 5 updated | 5 total | 4 available | 1 unavailable
        StrategyType:           RollingUpdate
        MinReadySeconds:        0
        RollingUpdateStrategy:  25% max unavailable, 25% max surge
        Pod Template:
          Labels:  app=web
          Containers:
           nginx:
            Image:         nginx:1.27
            Port:          80/TCP
            Host Port:     0/TCP
            Environment:   <none>
            Mounts:        <none>
          Volumes:         <none>
          Node-Selectors:  <none>
          Tolerations:     <none>
        Conditions:
          Type           Status  Reason
          ----           ------  ------
          Progressing    True    NewReplicaSetAvailable
          Available      True    MinimumReplicasAvailable
        OldReplicaSets:  <none>
        NewReplicaSet:   web-7c5ddbdf54 (5/5 replicas created)
        Events:
          Type    Reason             Age   From                   Message
          ----    ------             ----  ----                   -------
          Normal  ScalingReplicaSet  30m   deployment-controller  Scaled up replica set web-7c5ddbdf54 to 5
        """)


def test_describe_replicaset(shop):
    assert out(shop, 'describe', 'rs', '-n', 'shop', 'web-7c5ddbdf54') == expect("""
        Name:           web-7c5ddbdf54
        Namespace:      shop
        Selector:       app=web,pod-template-hash=7c5ddbdf54
        Labels:         app=web
                        pod-template-hash=7c5ddbdf54
        Annotations:    deployment.kubernetes.io/desired-replicas: 5
                        deployment.kubernetes.io/max-replicas: 7
                        deployment.kubernetes.io/revision: 1
        Controlled By:  Deployment/web
        Replicas:       5 current / 5 desired
        Pods Status:    5 Running / 0 Waiting / 0 Succeeded / 0 Failed
        Pod Template:
          Labels:  app=web
                   pod-template-hash=7c5ddbdf54
          Containers:
           nginx:
            Image:         nginx:1.27
            Port:          80/TCP
            Host Port:     0/TCP
            Environment:   <none>
            Mounts:        <none>
          Volumes:         <none>
          Node-Selectors:  <none>
          Tolerations:     <none>
        Events:
          Type    Reason            Age   From                   Message
          ----    ------            ----  ----                   -------
          Normal  SuccessfulCreate  30m   replicaset-controller  Created pod: web-7c5ddbdf54-2xkqf
        """)


def test_describe_statefulset(shop):
    assert out(shop, 'describe', 'sts', '-n', 'shop', 'db') == expect("""
        Name:               db
        Namespace:          shop
        CreationTimestamp:  Mon, 01 Jan 2001 00:00:00 +0000
        Selector:           app=db
        Labels:             <none>
        Annotations:        <none>
        Replicas:           2 desired | 0 total
        Update Strategy:    RollingUpdate
          Partition:        0
        Pods Status:        0 Running / 0 Waiting / 0 Succeeded / 0 Failed
        Pod Template:
          Labels:  app=db
          Containers:
           postgres:
            Image:         postgres:16
            Port:          <none>
            Host Port:     <none>
            Environment:   <none>
            Mounts:        <none>
          Volumes:         <none>
          Node-Selectors:  <none>
          Tolerations:     <none>
        Volume Claims:     <none>
        Events:            <none>
        """)


def test_describe_daemonset(shop):
    assert out(shop, 'describe', 'ds', '-n', 'shop', 'agent') == expect("""
        Name:           agent
        Selector:       app=agent
        Node-Selector:  kubernetes.io/os=linux
        Labels:         <none>
        Annotations:    deprecated.daemonset.template.generation: 1
        Desired Number of Nodes Scheduled: 0
        Current Number of Nodes Scheduled: 0
        Number of Nodes Scheduled with Up-to-date Pods: 0
        Number of Nodes Scheduled with Available Pods: 0
        Number of Nodes Misscheduled: 0
        Pods Status:  0 Running / 0 Waiting / 0 Succeeded / 0 Failed
        Pod Template:
          Labels:  app=agent
          Containers:
           agent:
            Image:      busybox:1.36
            Port:       <none>
            Host Port:  <none>
            Command:
              sleep
              infinity
            Environment:   <none>
            Mounts:        <none>
          Volumes:         <none>
          Node-Selectors:  kubernetes.io/os=linux
          Tolerations:     <none>
        Events:            <none>
        """)


def test_describe_node(shop):
    assert out(shop, 'describe', 'node', 'node-2') == expect("""
        Name:               node-2
        Roles:              <none>
        Labels:             beta.kubernetes.io/arch=amd64
                            beta.kubernetes.io/os=linux
                            kubernetes.io/arch=amd64
                            kubernetes.io/hostname=node-2
                            kubernetes.io/os=linux
        Annotations:        node.alpha.kubernetes.io/ttl: 0
                            volumes.kubernetes.io/controller-managed-attach-detach: true
        CreationTimestamp:  Mon, 01 Jan 2001 00:00:00 +0000
        Taints:             node.kubernetes.io/unschedulable:NoSchedule
        Unschedulable:      true
        Lease:
          HolderIdentity:  node-2
          AcquireTime:     <unset>
          RenewTime:       Mon, 01 Jan 2001 00:00:00 +0000
        Conditions:
          Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message
          ----             ------  -----------------                 ------------------                ------                       -------
          MemoryPressure   False   Mon, 01 Jan 2001 00:00:00 +0000   Mon, 01 Jan 2001 00:00:00 +0000   KubeletHasSufficientMemory   kubelet has sufficient memory available
          DiskPressure     False   Mon, 01 Jan 2001 00:00:00 +0000   Mon, 01 Jan 2001 00:00:00 +0000   KubeletHasNoDiskPressure     kubelet has no disk pressure
          PIDPressure      False   Mon, 01 Jan 2001 00:00:00 +0000   Mon, 01 Jan 2001 00:00:00 +0000   KubeletHasSufficientPID      kubelet has sufficient PID available
          Ready            True    Mon, 01 Jan 2001 00:00:00 +0000   Mon, 01 Jan 2001 00:00:00 +0000   KubeletReady                 kubelet is posting ready status
        Addresses:
          InternalIP:  172.18.0.3
          Hostname:    node-2
        Capacity:
          cpu:                2
          ephemeral-storage:  61202244Ki
          hugepages-2Mi:      0
          memory:             8129452Ki
          pods:               110
        Allocatable:
          cpu:                2
          ephemeral-storage:  61202244Ki
          hugepages-2Mi:      0
          memory:             8129452Ki
          pods:               110
        System Info:
          Machine ID:                 5f3c0d6e8b2a4c1e9d7f6a5b4c3d2e1f
          System UUID:                00000000-0000-0000-0000-000000000000
          Boot ID:                    00000000-0000-0000-0000-000000000000
          Kernel Version:             6.1.0-28-amd64
          OS Image:                   Debian GNU/Linux 12 (bookworm)
          Operating System:           linux
          Architecture:               amd64
          Container Runtime Version:  containerd://1.7.24
          Kubelet Version:            v1.32.0
          Kube-Proxy Version:         v1.32.0
        PodCIDR:                      10.244.2.0/24
        PodCIDRs:                     10.244.2.0/24
        Non-terminated Pods:          (2 in total)
          Namespace                   Name                    CPU Requests  CPU Limits  Memory Requests  Memory Limits  Age
          ---------                   ----                    ------------  ----------  ---------------  -------------  ---
          shop                        web-7c5ddbdf54-8hjzm    0 (0%)        0 (0%)      0 (0%)           0 (0%)         AGE
          shop                        web-7c5ddbdf54-h4tcl    0 (0%)        0 (0%)      0 (0%)           0 (0%)         AGE
        Allocated resources:
          (Total limits may be over 100 percent, i.e., overcommitted.)
          Resource           Requests  Limits
          --------           --------  ------
          cpu                0 (0%)    0 (0%)
          memory             0 (0%)    0 (0%)
          ephemeral-storage  0 (0%)    0 (0%)
          hugepages-2Mi      0 (0%)    0 (0%)
        Events:              <none>
        """)


def test_describe_configmap(shop):
    assert out(shop, 'describe', 'cm', '-n', 'shop', 'cfg') == expect("""
        Name:         cfg
        Namespace:    shop
        Labels:       <none>
        Annotations:  <none>

        Data
        ====
        greeting:
        ----
        hello


        BinaryData
        ====

        Events:  <none>
        """)


def test_describe_secret(shop):
    # describeSecret ranges over a Go map: the Data lines come in any order
    assert sorted_lines(out(shop, 'describe', 'secret', '-n', 'shop', 'creds')) == sorted_lines(expect("""
        Name:         creds
        Namespace:    shop
        Labels:       <none>
        Annotations:  <none>

        Type:  Opaque

        Data
        ====
        pass:  7 bytes
        user:  5 bytes
        """))


def test_describe_serviceaccount(shop):
    assert out(shop, 'describe', 'sa', '-n', 'shop', 'bot') == expect("""
        Name:                bot
        Namespace:           shop
        Labels:              <none>
        Annotations:         <none>
        Image pull secrets:  <none>
        Mountable secrets:   <none>
        Tokens:              <none>
        Events:              <none>
        """)


def test_describe_lease(shop):
    assert out(shop, 'describe', 'lease', '-n', 'shop', 'leader') == expect("""
        Name:         leader
        Namespace:    shop
        Labels:       <none>
        Annotations:  <none>
        API Version:  coordination.k8s.io/v1
        Kind:         Lease
        Metadata:
          Creation Timestamp:  2001-01-01T00:00:00Z
          Resource Version:    "RV"
          UID:                 00000000-0000-0000-0000-000000000000
        Spec:
          Holder Identity:         node-1
          Lease Duration Seconds:  15
        Events:                    <none>
        """)


def test_get_pods_all_namespaces_with_label_column(shop):
    assert out(shop, 'get', 'pods', '-A', '-L', 'app,pod-template-hash', '--sort-by=.status.podIP') == expect("""
        NAMESPACE   NAME                   READY   STATUS             RESTARTS      AGE   APP   POD-TEMPLATE-HASH
        shop        web-7c5ddbdf54-2xkqf   1/1     Running            0             AGE   web   7c5ddbdf54
        shop        web-7c5ddbdf54-b9nqw   1/1     Running            0             AGE   web   7c5ddbdf54
        shop        web-7c5ddbdf54-x7pvd   0/1     CrashLoopBackOff   4 (20m ago)   AGE   web   7c5ddbdf54
        shop        web-7c5ddbdf54-8hjzm   1/1     Running            0             AGE   web   7c5ddbdf54
        shop        web-7c5ddbdf54-h4tcl   1/1     Running            0             AGE   web   7c5ddbdf54
        """)


def test_get_services_show_labels(shop):
    assert out(shop, 'get', 'svc', '-n', 'shop', '--show-labels') == expect("""
        NAME     TYPE           CLUSTER-IP     EXTERNAL-IP      PORT(S)                      AGE   LABELS
        db       ClusterIP      None           <none>           5432/TCP                     AGE   <none>
        ext      ExternalName   <none>         example.com      <none>                       AGE   <none>
        web      ClusterIP      10.96.100.10   <none>           80/TCP                       AGE   app=web
        web-lb   LoadBalancer   10.96.100.12   172.18.255.200   80:30081/TCP,443:30443/TCP   AGE   <none>
        web-np   NodePort       10.96.100.11   <none>           80:30080/TCP                 AGE   <none>
        """)


def test_get_pods_custom_columns(shop):
    assert out(shop, 'get', 'pods', '-n', 'shop', '-o', 'custom-columns=NAME:.metadata.name,IP:.status.podIP,NODE:.spec.nodeName,READY:.status.containerStatuses[0].ready') == expect("""
        NAME                   IP            NODE     READY
        web-7c5ddbdf54-2xkqf   10.244.1.11   node-1   true
        web-7c5ddbdf54-8hjzm   10.244.2.12   node-2   true
        web-7c5ddbdf54-b9nqw   10.244.1.13   node-1   true
        web-7c5ddbdf54-h4tcl   10.244.2.14   node-2   true
        web-7c5ddbdf54-x7pvd   10.244.1.15   node-1   false
        """)


def test_get_endpoints_sorted_by_name_with_selector(shop):
    assert out(shop, 'get', 'ep', '-n', 'shop', '--sort-by=.metadata.name', '-l', 'app=web') == expect("""
        NAME   ENDPOINTS                                                  AGE
        web    10.244.1.11:80,10.244.2.12:80,10.244.1.13:80 + 1 more...   AGE
        """)


def test_get_service_yaml(shop):
    assert out(shop, 'get', 'svc', '-n', 'shop', 'web-lb', '-o', 'yaml') == expect("""
        apiVersion: v1
        kind: Service
        metadata:
          annotations:
            kubectl.kubernetes.io/last-applied-configuration: |
              {"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web-lb","namespace":"shop"},"spec":{"clusterIP":"10.96.100.12","ports":[{"name":"http","nodePort":30081,"port":80,"targetPort":80},{"name":"https","nodePort":30443,"port":443,"targetPort":8443}],"selector":{"app":"web"},"sessionAffinity":"ClientIP","type":"LoadBalancer"}}
          creationTimestamp: "2001-01-01T00:00:00Z"
          name: web-lb
          namespace: shop
          resourceVersion: "RV"
          uid: 00000000-0000-0000-0000-000000000000
        spec:
          allocateLoadBalancerNodePorts: true
          clusterIP: 10.96.100.12
          clusterIPs:
          - 10.96.100.12
          externalTrafficPolicy: Cluster
          internalTrafficPolicy: Cluster
          ipFamilies:
          - IPv4
          ipFamilyPolicy: SingleStack
          ports:
          - name: http
            nodePort: 30081
            port: 80
            protocol: TCP
            targetPort: 80
          - name: https
            nodePort: 30443
            port: 443
            protocol: TCP
            targetPort: 8443
          selector:
            app: web
          sessionAffinity: ClientIP
          sessionAffinityConfig:
            clientIP:
              timeoutSeconds: 10800
          type: LoadBalancer
        status:
          loadBalancer:
            ingress:
            - ip: 172.18.255.200
              ipMode: VIP
        """)


def test_get_endpointslice_yaml(shop):
    assert out(shop, 'get', 'endpointslice', '-n', 'shop', 'db-d4n9c', '-o', 'yaml') == expect("""
        addressType: IPv4
        apiVersion: discovery.k8s.io/v1
        endpoints: null
        kind: EndpointSlice
        metadata:
          creationTimestamp: "2001-01-01T00:00:00Z"
          generateName: db-
          generation: 1
          labels:
            endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
            kubernetes.io/service-name: db
          name: db-d4n9c
          namespace: shop
          resourceVersion: "RV"
          uid: 00000000-0000-0000-0000-000000000000
        ports: null
        """)


def test_get_ingress_yaml(shop):
    assert out(shop, 'get', 'ing', '-n', 'shop', 'web', '-o', 'yaml') == expect("""
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata:
          annotations:
            kubectl.kubernetes.io/last-applied-configuration: |
              {"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"annotations":{},"name":"web","namespace":"shop"},"spec":{"ingressClassName":"nginx","rules":[{"host":"shop.example.com","http":{"paths":[{"backend":{"service":{"name":"web","port":{"number":80}}},"path":"/","pathType":"Prefix"},{"backend":{"service":{"name":"api","port":{"name":"http"}}},"path":"/api","pathType":"Prefix"}]}}],"tls":[{"hosts":["shop.example.com"],"secretName":"shop-tls"}]}}
          creationTimestamp: "2001-01-01T00:00:00Z"
          generation: 1
          name: web
          namespace: shop
          resourceVersion: "RV"
          uid: 00000000-0000-0000-0000-000000000000
        spec:
          ingressClassName: nginx
          rules:
          - host: shop.example.com
            http:
              paths:
              - backend:
                  service:
                    name: web
                    port:
                      number: 80
                path: /
                pathType: Prefix
              - backend:
                  service:
                    name: api
                    port:
                      name: http
                path: /api
                pathType: Prefix
          tls:
          - hosts:
            - shop.example.com
            secretName: shop-tls
        status:
          loadBalancer:
            ingress:
            - ip: 172.18.0.2
        """)


def test_get_events_without_the_scheduler_event(shop):
    assert out(shop, 'get', 'events', '-n', 'shop', '--field-selector', 'reason!=Scheduled') == expect("""
        LAST SEEN   TYPE      REASON              OBJECT                      MESSAGE
        22m         Normal    Pulled              pod/web-7c5ddbdf54-x7pvd    Container image "nginx:1.27" already present on machine
        21m         Normal    Created             pod/web-7c5ddbdf54-x7pvd    Created container nginx
        20m         Normal    Started             pod/web-7c5ddbdf54-x7pvd    Started container nginx
        12m         Warning   BackOff             pod/web-7c5ddbdf54-x7pvd    Back-off restarting failed container nginx in pod web-7c5ddbdf54-x7pvd_shop(00000000-0000-0000-0000-000000000000)
        30m         Normal    SuccessfulCreate    replicaset/web-7c5ddbdf54   Created pod: web-7c5ddbdf54-2xkqf
        30m         Normal    ScalingReplicaSet   deployment/web              Scaled up replica set web-7c5ddbdf54 to 5
        """)


def test_sort_by_over_several_kinds_fails_as_on_a_real_cluster(shop):
    """kubectl sorts the list of Tables itself here, and a Table has no .metadata.name."""
    cp = shop.kubectl("get", "svc,ep", "-n", NS, "--sort-by=.metadata.name", check=False)
    assert cp.returncode == 1
    assert cp.stderr == 'error: couldn\'t find any field with path "{.metadata.name}" in the list of objects\n'


def test_get_watch_prints_a_row_per_change(shop):
    """`get -w`: the table, then one row per change, columns taken from the first Table."""
    shop.kubectl("create", "namespace", "watching")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "watching"},
           "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}}
    kubectl_create(shop, pod)
    proc = subprocess.Popen(["kubectl", "get", "pods", "-n", "watching", "-o", "wide", "-w", "--request-timeout=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=shop.env)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        started = ago(seconds=0)
        shop.kubectl("patch", "pod", "w", "-n", "watching", "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"phase": "Running", "podIP": "10.244.1.30", "podIPs": [{"ip": "10.244.1.30"}],
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
                        "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "busybox",
                                               "imageID": "", "state": {"running": {"startedAt": started}}}]}}))
        lines.append(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert normalise("".join(lines)) == expect("""
        NAME   READY   STATUS    RESTARTS   AGE   IP       NODE     NOMINATED NODE   READINESS GATES
        w      0/1     Pending   0          AGE   <none>   node-1   <none>           <none>
        w      1/1     Running   0          AGE   10.244.1.30   node-1   <none>           <none>
        """)


# --- where pocketkube still differs from a real cluster -----------------------------------

def test_events_of_both_apis_are_one_list(shop):
    scheduled = ("30m         Normal    Scheduled           pod/web-7c5ddbdf54-x7pvd    "
                 "Successfully assigned shop/web-7c5ddbdf54-x7pvd to node-1\n")
    listed = out(shop, "get", "events", "-n", NS)
    assert listed.splitlines()[1] + "\n" == scheduled  # its name sorts first
    described = out(shop, "describe", "pod", "-n", NS, PODS[-1])
    assert ("  Normal   Scheduled  30m                 default-scheduler  "
            "Successfully assigned shop/web-7c5ddbdf54-x7pvd to node-1\n") in described
    via_new_api = out(shop, "get", "events.events.k8s.io", "-n", NS, "-o", "name")
    assert len(via_new_api.splitlines()) == 7


def test_describe_pod_shows_the_service_account_token_volume(shop):
    described = out(shop, "describe", "pod", "-n", NS, PODS[0])
    assert re.search(r"    Mounts:\n      /var/run/secrets/kubernetes.io/serviceaccount from "
                     r"kube-api-access-[a-z0-9]{5} \(ro\)\n", described)
    assert re.search(r"Volumes:\n  kube-api-access-[a-z0-9]{5}:\n"
                     r"    Type:                    Projected \(a volume that contains injected data from "
                     r"multiple sources\)\n"
                     r"    TokenExpirationSeconds:  3607\n"
                     r"    ConfigMapName:           kube-root-ca.crt\n", described)


def test_describe_namespace(shop):
    assert out(shop, "describe", "ns", NS) == expect("""
        Name:         shop
        Labels:       kubernetes.io/metadata.name=shop
                      team=web
        Annotations:  <none>
        Status:       Active

        No resource quota.

        No LimitRange resource.
        """)


def test_services_get_allocated_addresses_and_ports(shop):
    shop.kubectl("create", "service", "nodeport", "alloc", "--tcp=80:8080", "-n", NS)
    shop.kubectl("create", "service", "loadbalancer", "alloc-lb", "--tcp=443:8443", "-n", NS)
    svc = shop.kubectl_json("get", "svc", "alloc", "-n", NS)
    assert re.fullmatch(r"10\.(9[6-9]|1[01][0-9])\.\d+\.\d+", svc["spec"].get("clusterIP", ""))
    assert 30000 <= svc["spec"]["ports"][0].get("nodePort", 0) <= 32767
    rows = out(shop, "get", "svc", "alloc-lb", "-n", NS).splitlines()
    assert re.fullmatch(r"alloc-lb   LoadBalancer   10\.\d+\.\d+\.\d+ +<pending>     443:3\d{4}/TCP   AGE", rows[1])


@pytest.mark.xfail(strict=True, reason="no bootstrap of the `kubernetes` Service in default and no "
                   "ServiceAccount controller creating `default` in every namespace")
def test_every_namespace_has_a_default_service_account_and_default_has_kubernetes(shop):
    assert out(shop, "get", "sa", "-n", NS, "-o", "name") == "serviceaccount/bot\nserviceaccount/default\n"
    rows = out(shop, "get", "svc", "kubernetes", "-n", "default").splitlines()
    assert rows[1] == "kubernetes   ClusterIP   10.96.0.1    <none>        443/TCP   AGE"


def test_explain_service_ports(shop):
    explained = shop.kubectl("explain", "service.spec.ports").stdout
    assert explained.startswith("KIND:       Service\nVERSION:    v1\n\nFIELD: ports <[]ServicePort>\n")
    assert "    The list of ports that are exposed by this service. More info:\n" in explained
    assert "  protocol\t<string>\n  enum: SCTP, TCP, UDP\n" in explained
