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

pytestmark = pytest.mark.kubectl

NS = "shop"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def ago(**delta: float) -> str:
    """An RFC 3339 time `delta` before the start of this module (stable for ~30 s)."""
    return (NOW - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_ago(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")


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
  replicas: 3
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
  a: "1"
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
    heartbeat = ago(seconds=40)
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
    started = ago(minutes=30, seconds=30)
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
        last_state = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(minutes=20, seconds=40),
                                     "finishedAt": ago(minutes=20, seconds=30),
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


def core_event(name: str, kind: str, obj: str, reason: str, message: str, source: dict, *,
               type_: str = "Normal", first: str, last: str, count: int = 1, api: str = "v1",
               field_path: str | None = None) -> dict:
    involved = {"kind": kind, "namespace": NS, "name": obj, "apiVersion": api}
    if field_path:
        involved["fieldPath"] = field_path
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": NS},
            "involvedObject": involved, "reason": reason, "message": message, "source": source,
            "firstTimestamp": first, "lastTimestamp": last, "count": count, "type": type_,
            "eventTime": None, "reportingComponent": source.get("component", ""),
            "reportingInstance": source.get("host", "")}
