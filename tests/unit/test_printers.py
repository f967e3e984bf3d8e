"""Server-side printing: Table columns and cells as a Kubernetes 1.32 API server prints them.

Expected cells are reasoned out from k/k pkg/printers/internalversion/printers.go (1.32)
for objects shaped as a real cluster stores them.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pocketkube.apiserver import printers
from pocketkube.apiserver.printers import human_duration, table_for, translate_timestamp_since

NOW = dt.datetime(2025, 1, 15, 12, 0, 0, tzinfo=dt.timezone.utc)


def ago(seconds: float, micro: bool = False) -> str:
    t = NOW - dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def cells(kind: str, group: str, obj: dict) -> list:
    _, rows = table_for(kind, group, [obj], NOW)
    assert len(rows) == 1
    return rows[0]


def column_names(kind: str, group: str) -> list[tuple[str, int]]:
    columns, _ = table_for(kind, group, [], NOW)
    return [(c["name"], c["priority"]) for c in columns]


# --- HumanDuration -------------------------------------------------------------------

DAY = 86400


@pytest.mark.parametrize("seconds, expected", [
    (-5, "<invalid>"),
    (-2, "<invalid>"),
    (-1.9, "0s"),  # int(d.Seconds()) truncates toward zero: -1 is tolerated clock skew
    (-1, "0s"),
    (-0.2, "0s"),
    (0, "0s"),
    (0.999, "0s"),
    (1, "1s"),
    (59, "59s"),
    (119, "119s"),
    (119.999, "119s"),
    (120, "2m"),
    (121, "2m1s"),
    (312, "5m12s"),
    (599, "9m59s"),
    (600, "10m"),
    (659, "10m"),
    (10799, "179m"),
    (10800, "3h"),
    (10860, "3h1m"),
    (28799, "7h59m"),
    (28800, "8h"),
    (172799, "47h"),
    (2 * DAY, "2d"),
    (2 * DAY + 3600, "2d1h"),
    (8 * DAY - 1, "7d23h"),
    (8 * DAY, "8d"),
    (730 * DAY - 1, "729d"),
    (730 * DAY, "2y"),
    (731 * DAY, "2y1d"),
    (8 * 365 * DAY - 1, "7y364d"),
    (8 * 365 * DAY, "8y"),
    (3000 * DAY, "8y"),
])
def test_human_duration(seconds, expected):
    assert human_duration(seconds) == expected


@pytest.mark.parametrize("ts, expected", [
    (None, "<unknown>"),
    ("", "<unknown>"),
    ("0001-01-01T00:00:00Z", "<unknown>"),  # Go's zero time
    (ago(312), "5m12s"),
    (ago(29.5, micro=True), "29s"),  # a MicroTime
    ("2025-01-15T12:00:01Z", "0s"),  # a second in the future is clock skew
    ("2025-01-15T12:00:05Z", "<invalid>"),
    ("2025-01-15T13:00:00+01:00", "0s"),  # offsets are honoured
])
def test_translate_timestamp_since(ts, expected):
    assert translate_timestamp_since(ts, NOW) == expected


def test_translate_timestamp_since_accepts_a_naive_now_as_utc():
    assert translate_timestamp_since(ago(90), NOW.replace(tzinfo=None)) == "90s"


# --- column definitions ----------------------------------------------------------------

# kubectl-compat.md C.1 (and printers.go for the kinds it lists only in the brief).
EXPECTED_COLUMNS = {
    ("", "Pod"): [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
                  ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)],
    ("", "Service"): [("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0),
                      ("Port(s)", 0), ("Age", 0), ("Selector", 1)],
    ("", "Endpoints"): [("Name", 0), ("Endpoints", 0), ("Age", 0)],
    ("discovery.k8s.io", "EndpointSlice"): [("Name", 0), ("AddressType", 0), ("Ports", 0),
                                            ("Endpoints", 0), ("Age", 0)],
    ("apps", "Deployment"): [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0),
                             ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)],
    ("apps", "ReplicaSet"): [("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0),
                             ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)],
    ("apps", "StatefulSet"): [("Name", 0), ("Ready", 0), ("Age", 0), ("Containers", 1),
                              ("Images", 1)],
    ("apps", "DaemonSet"): [("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0),
                            ("Up-to-date", 0), ("Available", 0), ("Node Selector", 0),
                            ("Age", 0), ("Containers", 1), ("Images", 1), ("Selector", 1)],
    ("", "Node"): [("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0),
                   ("Internal-IP", 1), ("External-IP", 1), ("OS-Image", 1),
                   ("Kernel-Version", 1), ("Container-Runtime", 1)],
    ("", "Namespace"): [("Name", 0), ("Status", 0), ("Age", 0)],
    ("", "Secret"): [("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
    ("", "ConfigMap"): [("Name", 0), ("Data", 0), ("Age", 0)],
    ("", "ServiceAccount"): [("Name", 0), ("Secrets", 0), ("Age", 0)],
    ("", "Event"): [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0),
                    ("Subobject", 1), ("Source", 1), ("Message", 0), ("First Seen", 1),
                    ("Count", 1), ("Name", 1)],
    ("events.k8s.io", "Event"): [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0),
                                 ("Subobject", 1), ("Source", 1), ("Message", 0),
                                 ("First Seen", 1), ("Count", 1), ("Name", 1)],
    ("networking.k8s.io", "Ingress"): [("Name", 0), ("Class", 0), ("Hosts", 0), ("Address", 0),
                                       ("Ports", 0), ("Age", 0)],
    ("networking.k8s.io", "IngressClass"): [("Name", 0), ("Controller", 0), ("Parameters", 0),
                                            ("Age", 0)],
    ("coordination.k8s.io", "Lease"): [("Name", 0), ("Holder", 0), ("Age", 0)],
    ("autoscaling", "Scale"): [("Name", 0), ("Desired", 0), ("Available", 0), ("Age", 0)],
    ("example.com", "Widget"): [("Name", 0), ("Created At", 0)],
    ("", "PodTemplate"): [("Name", 0), ("Created At", 0)],
    ("", "PersistentVolumeClaim"): [("Name", 0), ("Status", 0), ("Volume", 0), ("Capacity", 0), ("Access Modes", 0),
                                    ("StorageClass", 0), ("VolumeAttributesClass", 0), ("Age", 0),
                                    ("VolumeMode", 1)],
    ("", "PersistentVolume"): [("Name", 0), ("Capacity", 0), ("Access Modes", 0), ("Reclaim Policy", 0),
                               ("Status", 0), ("Claim", 0), ("StorageClass", 0), ("VolumeAttributesClass", 0),
                               ("Reason", 0), ("Age", 0), ("VolumeMode", 1)],
}


@pytest.mark.parametrize("group, kind", list(EXPECTED_COLUMNS))
def test_column_names_and_priorities(group, kind):
    assert column_names(kind, group) == EXPECTED_COLUMNS[(group, kind)]


@pytest.mark.parametrize("group, kind", list(EXPECTED_COLUMNS))
def test_column_shape_and_name_format(group, kind):
    columns, _ = table_for(kind, group, [], NOW)
    for column in columns:
        assert set(column) == {"name", "type", "format", "description", "priority"}
        assert column["type"] in ("string", "integer", "date")
        assert column["description"]
        if column["name"] == "Name" and kind != "Scale":
            assert column["format"] == "name"
        else:
            assert column["format"] == ""
        if column["name"] == "Age":
            assert column["description"] == printers._D_CREATED


def test_descriptions_are_the_swagger_docs():
    columns, _ = table_for("Pod", "", [], NOW)
    by_name = {c["name"]: c for c in columns}
    assert by_name["Name"]["description"].startswith("Name must be unique within a namespace. ")
    assert "in UTC.\n\nPopulated by the system." in by_name["Age"]["description"]
    assert by_name["IP"]["description"] == (
        "podIP address allocated to the pod. Routable at least within the cluster. "
        "Empty if not yet allocated.")
    assert by_name["Restarts"]["type"] == "string"
    assert by_name["Restarts"]["description"] == (
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.")


@pytest.mark.parametrize("group, kind, types", [
    ("apps", "ReplicaSet", ["string", "integer", "integer", "integer", "string", "string",
                            "string", "string"]),
    ("apps", "DaemonSet", ["string"] + ["integer"] * 5 + ["string"] * 5),
    ("apps", "Deployment", ["string"] * 8),  # Up-to-date/Available cells are ints all the same
    ("autoscaling", "Scale", ["string", "integer", "integer", "string"]),
    ("example.com", "Widget", ["string", "date"]),
])
def test_column_types(group, kind, types):
    columns, _ = table_for(kind, group, [], NOW)
    assert [c["type"] for c in columns] == types


def test_scale_name_column_has_no_name_format():
    columns, _ = table_for("Scale", "autoscaling", [], NOW)
    assert columns[0] == {"name": "Name", "type": "string", "format": "",
                          "description": printers._D_NAME, "priority": 0}


def test_columns_are_fresh_copies():
    columns, _ = table_for("Service", "", [], NOW)
    columns[0]["name"] = "changed"
    again, _ = table_for("Service", "", [], NOW)
    assert again[0]["name"] == "Name"


@pytest.mark.parametrize("group, kind", list(EXPECTED_COLUMNS))
def test_every_printer_copes_with_a_bare_object(group, kind):
    columns, rows = table_for(kind, group, [{"metadata": {"name": "x"}}], NOW)
    assert len(rows[0]) == len(columns)


# --- Pod -----------------------------------------------------------------------------

def running(ready=True, restarts=0, last_finished=None, name="app", image="nginx"):
    status = {"name": name, "image": image, "imageID": "", "ready": ready, "started": True,
              "restartCount": restarts, "state": {"running": {"startedAt": ago(600)}}}
    if last_finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                              "startedAt": ago(last_finished + 5),
                                              "finishedAt": ago(last_finished)}}
    return status


def waiting(reason, name="app", restarts=0, last_finished=None):
    status = {"name": name, "ready": False, "started": False, "restartCount": restarts,
              "state": {"waiting": {"reason": reason}}}
    if last_finished is not None:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                              "finishedAt": ago(last_finished)}}
    return status


def terminated(name="app", exit_code=0, reason="Completed", signal=0):
    state = {"exitCode": exit_code, "startedAt": ago(100), "finishedAt": ago(50)}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "started": False, "restartCount": 0,
            "state": {"terminated": state}}


def conditions(**statuses):
    return [{"type": t, "status": s} for t, s in statuses.items()]


def pod(phase="Running", containers=("app",), statuses=(), init=(), init_statuses=(),
        conds=None, **extra):
    obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d4b9c8f6d-x2x9z", "namespace": "default",
                     "creationTimestamp": ago(312)},
        "spec": {"containers": [{"name": n, "image": "nginx"} for n in containers],
                 "initContainers": list(init), "nodeName": "pk-worker"},
        "status": {"phase": phase, "conditions": conds or [],
                   "containerStatuses": list(statuses),
                   "initContainerStatuses": list(init_statuses),
                   "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        obj[section][field] = value
    return obj


def pod_cells(obj):
    return cells("Pod", "", obj)


def test_pod_running_with_wide_cells():
    obj = pod(statuses=[running()],
              conds=conditions(Initialized="True", Ready="True", ContainersReady="True",
                               PodScheduled="True"))
    assert pod_cells(obj) == ["web-7d4b9c8f6d-x2x9z", "1/1", "Running", "0", "5m12s",
                              "10.244.1.7", "pk-worker", "<none>", "<none>"]


def test_pod_pending_unscheduled():
    obj = pod(phase="Pending",
              conds=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}])
    del obj["spec"]["nodeName"]
    obj["status"].pop("podIP")
    obj["status"].pop("podIPs")
    assert pod_cells(obj) == ["web-7d4b9c8f6d-x2x9z", "0/1", "Pending", "0", "5m12s",
                              "<none>", "<none>", "<none>", "<none>"]


def test_pod_nominated_node_and_readiness_gates():
    obj = pod(statuses=[running()],
              conds=conditions(Ready="False") + [
                  {"type": "example.com/lb-ready", "status": "True"},
                  {"type": "example.com/feature", "status": "False"}],
              spec__readinessGates=[{"conditionType": "example.com/lb-ready"},
                                    {"conditionType": "example.com/feature"},
                                    {"conditionType": "example.com/missing"}],
              status__nominatedNodeName="pk-worker2")
    assert pod_cells(obj)[7:] == ["pk-worker2", "1/3"]


@pytest.mark.parametrize("name, obj, ready, status, restarts", [
    ("scheduling gated",
     pod(phase="Pending", conds=[{"type": "PodScheduled", "status": "False",
                                  "reason": "SchedulingGated"}]),
     "0/1", "SchedulingGated", "0"),
    ("container creating",
     pod(phase="Pending", statuses=[waiting("ContainerCreating")]),
     "0/1", "ContainerCreating", "0"),
    ("image pull backoff",
     pod(phase="Pending", statuses=[waiting("ImagePullBackOff")]),
     "0/1", "ImagePullBackOff", "0"),
    ("err image pull",
     pod(phase="Pending", statuses=[waiting("ErrImagePull")]),
     "0/1", "ErrImagePull", "0"),
    ("crash loop with the last restart 47s ago",
     pod(statuses=[waiting("CrashLoopBackOff", restarts=5, last_finished=47)]),
     "0/1", "CrashLoopBackOff", "5 (47s ago)"),
    ("completed",
     pod(phase="Succeeded", statuses=[terminated()],
         conds=conditions(Ready="False")),
     "0/1", "Completed", "0"),
    ("error",
     pod(phase="Failed", statuses=[terminated(exit_code=1, reason="Error")]),
     "0/1", "Error", "0"),
    ("oom killed",
     pod(phase="Running", statuses=[terminated(exit_code=137, reason="OOMKilled")]),
     "0/1", "OOMKilled", "0"),
    ("terminated without a reason shows the exit code",
     pod(phase="Failed", statuses=[terminated(exit_code=2, reason="")]),
     "0/1", "ExitCode:2", "0"),
    ("terminated by a signal",
     pod(phase="Failed", statuses=[terminated(exit_code=137, reason="", signal=9)]),
     "0/1", "Signal:9", "0"),
    ("evicted",
     pod(phase="Failed", status__reason="Evicted",
         status__message="The node was low on resource: memory."),
     "0/1", "Evicted", "0"),
    ("last container in the list decides (scanned last to first)",
     pod(containers=("app", "sidecar"),
         statuses=[waiting("CrashLoopBackOff", name="app"), running(name="sidecar")]),
     "1/2", "CrashLoopBackOff", "0"),
    ("completed with a container still running and the pod not ready",
     pod(containers=("job", "proxy"),
         statuses=[terminated(name="job"), running(name="proxy")],
         conds=conditions(Ready="False")),
     "1/2", "NotReady", "0"),
    ("completed with a container still running and the pod ready",
     pod(containers=("proxy", "job"),
         statuses=[running(name="proxy"), terminated(name="job")],
         conds=conditions(Ready="True")),
     "1/2", "Running", "0"),
    ("running but not ready",
     pod(statuses=[running(ready=False)], conds=conditions(Ready="False")),
     "0/1", "Running", "0"),
])
def test_pod_status(name, obj, ready, status, restarts):
    assert pod_cells(obj)[1:4] == [ready, status, restarts], name


def init_container(name, restart_policy=None):
    c = {"name": name, "image": "busybox"}
    if restart_policy:
        c["restartPolicy"] = restart_policy
    return c


TWO_INITS = [init_container("migrate"), init_container("warm-cache")]


@pytest.mark.parametrize("name, init_statuses, statuses, conds, status, restarts", [
    ("first init running",
     [running(name="migrate"), waiting("PodInitializing", name="warm-cache")],
     [waiting("PodInitializing")], conditions(Initialized="False"), "Init:0/2", "0"),
    ("second init running",
     [terminated(name="migrate"), running(name="warm-cache")],
     [waiting("PodInitializing")], conditions(Initialized="False"), "Init:1/2", "0"),
    ("init waiting with PodInitializing counts as progress",
     [waiting("PodInitializing", name="migrate"), waiting("PodInitializing", name="warm-cache")],
     [], conditions(Initialized="False"), "Init:0/2", "0"),
    ("init crash looping",
     [waiting("CrashLoopBackOff", name="migrate", restarts=3, last_finished=10),
      waiting("PodInitializing", name="warm-cache")],
     [waiting("PodInitializing")], conditions(Initialized="False"),
     "Init:CrashLoopBackOff", "3 (10s ago)"),
    ("init failed with a reason",
     [terminated(name="migrate", exit_code=1, reason="Error")],
     [], conditions(Initialized="False"), "Init:Error", "0"),
    ("init failed without a reason",
     [terminated(name="migrate", exit_code=3, reason="")],
     [], conditions(Initialized="False"), "Init:ExitCode:3", "0"),
    ("init killed by a signal",
     [terminated(name="migrate", exit_code=137, reason="", signal=9)],
     [], conditions(Initialized="False"), "Init:Signal:9", "0"),
    ("all inits done, containers starting",
     [terminated(name="migrate"), terminated(name="warm-cache")],
     [waiting("PodInitializing")], conditions(Initialized="True"), "PodInitializing", "0"),
    ("all inits done, running",
     [terminated(name="migrate"), terminated(name="warm-cache")],
     [running()], conditions(Initialized="True", Ready="True"), "Running", "0"),
])
def test_pod_init_status(name, init_statuses, statuses, conds, status, restarts):
    obj = pod(phase="Pending" if status.startswith("Init") else "Running",
              init=TWO_INITS, init_statuses=init_statuses, statuses=statuses, conds=conds)
    assert pod_cells(obj)[2:4] == [status, restarts], name


def test_pod_with_sidecar_counts_it_as_a_container():
    obj = pod(init=[init_container("istio-proxy", "Always")],
              init_statuses=[dict(running(name="istio-proxy", restarts=1, last_finished=200))],
              statuses=[running(restarts=2, last_finished=90)],
              conds=conditions(Initialized="True", Ready="True"))
    assert pod_cells(obj)[1:4] == ["2/2", "Running", "3 (90s ago)"]


def test_pod_restarts_sum_and_take_the_newest_termination():
    obj = pod(containers=("app", "log"),
              statuses=[running(name="app", restarts=4, last_finished=3 * 3600),
                        running(name="log", restarts=1, last_finished=125)],
              conds=conditions(Ready="True"))
    assert pod_cells(obj)[1:4] == ["2/2", "Running", "5 (2m5s ago)"]


def test_pod_restarts_without_a_termination_time_show_the_count_only():
    obj = pod(statuses=[running(restarts=2)], conds=conditions(Ready="True"))
    assert pod_cells(obj)[3] == "2"


@pytest.mark.parametrize("phase, statuses, reason, expected", [
    ("Running", [running()], "", "Terminating"),
    ("Pending", [waiting("ContainerCreating")], "", "Terminating"),
    ("Succeeded", [terminated()], "", "Completed"),
    ("Failed", [terminated(exit_code=1, reason="Error")], "", "Error"),
    ("Running", [running()], "NodeLost", "Unknown"),
])
def test_pod_being_deleted(phase, statuses, reason, expected):
    obj = pod(phase=phase, statuses=statuses, conds=conditions(Ready="True"))
    obj["metadata"]["deletionTimestamp"] = ago(-30)
    obj["metadata"]["deletionGracePeriodSeconds"] = 30
    if reason:
        obj["status"]["reason"] = reason
    assert pod_cells(obj)[2] == expected


def test_node_lost_pod_without_deletion_keeps_its_reason():
    obj = pod(statuses=[], status__reason="NodeLost")
    assert pod_cells(obj)[2] == "NodeLost"


# --- Service -------------------------------------------------------------------------

def service(name="web", type_="ClusterIP", cluster_ips=("10.96.12.7",), ports=None,
            selector=None, status=None, **spec_extra):
    spec = {"type": type_, "ports": ports if ports is not None else
            [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}
    if cluster_ips:
        spec["clusterIP"] = cluster_ips[0]
        spec["clusterIPs"] = list(cluster_ips)
    if selector is not None:
        spec["selector"] = selector
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(312)},
            "spec": spec, "status": status or {"loadBalancer": {}}}


@pytest.mark.parametrize("name, obj, expected", [
    ("cluster ip",
     service(selector={"app": "web"}),
     ["web", "ClusterIP", "10.96.12.7", "<none>", "80/TCP", "5m12s", "app=web"]),
    ("the kubernetes service",
     service(name="kubernetes", cluster_ips=("10.96.0.1",),
             ports=[{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}]),
     ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "5m12s", "<none>"]),
    ("node port with two ports",
     service(type_="NodePort", selector={"tier": "frontend", "app": "web"},
             ports=[{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                     "nodePort": 30080},
                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53,
                     "nodePort": 31053}],
             externalTrafficPolicy="Cluster"),
     ["web", "NodePort", "10.96.12.7", "<none>", "80:30080/TCP,53:31053/UDP", "5m12s",
      "app=web,tier=frontend"]),
    ("load balancer pending",
     service(type_="LoadBalancer", selector={"app": "web"},
             ports=[{"protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31234}]),
     ["web", "LoadBalancer", "10.96.12.7", "<pending>", "80:31234/TCP", "5m12s", "app=web"]),
    ("load balancer with an assigned address",
     service(type_="LoadBalancer", selector={"app": "web"},
             ports=[{"protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31234}],
             status={"loadBalancer": {"ingress": [{"ip": "172.18.255.200", "ipMode": "VIP"}]}}),
     ["web", "LoadBalancer", "10.96.12.7", "172.18.255.200", "80:31234/TCP", "5m12s",
      "app=web"]),
    ("load balancer with hostnames, IPs and external IPs",
     service(type_="LoadBalancer", externalIPs=["192.0.2.10"],
             ports=[{"protocol": "TCP", "port": 443, "targetPort": 8443, "nodePort": 30443}],
             status={"loadBalancer": {"ingress": [
                 {"hostname": "lb.example.com"}, {"ip": "172.18.255.201"},
                 {"ip": "172.18.255.201"}]}}),
     ["web", "LoadBalancer", "10.96.12.7", "172.18.255.201,lb.example.com,192.0.2.10",
      "443:30443/TCP", "5m12s", "<none>"]),
    ("external name",
     service(name="db", type_="ExternalName", cluster_ips=(), ports=[],
             externalName="db.example.com"),
     ["db", "ExternalName", "<none>", "db.example.com", "<none>", "5m12s", "<none>"]),
    ("headless",
     service(name="web-headless", cluster_ips=("None",), selector={"app": "web"}),
     ["web-headless", "ClusterIP", "None", "<none>", "80/TCP", "5m12s", "app=web"]),
    ("cluster ip with external IPs and dual stack",
     service(cluster_ips=("10.96.12.7", "fd00:10:96::7"), externalIPs=["192.0.2.1", "192.0.2.2"],
             selector={"app": "web"}),
     ["web", "ClusterIP", "10.96.12.7", "192.0.2.1,192.0.2.2", "80/TCP", "5m12s", "app=web"]),
])
def test_service(name, obj, expected):
    assert cells("Service", "", obj) == expected, name


# --- Endpoints and EndpointSlice -------------------------------------------------------

def address(ip, pod_name):
    return {"ip": ip, "nodeName": "pk-worker",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": pod_name}}


def endpoints(subsets):
    obj = {"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(312)}}
    if subsets is not None:
        obj["subsets"] = subsets
    return obj


FIVE_READY = [address(f"10.244.{n // 3 + 1}.{n + 2}", f"web-{n}") for n in range(5)]


@pytest.mark.parametrize("name, subsets, expected", [
    ("no subsets", None, "<none>"),
    ("five ready addresses",
     [{"addresses": FIVE_READY, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}],
     "10.244.1.2:8080,10.244.1.3:8080,10.244.1.4:8080 + 2 more..."),
    ("exactly three",
     [{"addresses": FIVE_READY[:3], "ports": [{"port": 80, "protocol": "TCP"}]}],
     "10.244.1.2:80,10.244.1.3:80,10.244.1.4:80"),
    ("not ready addresses are not shown",
     [{"addresses": FIVE_READY[:2],
       "notReadyAddresses": [address("10.244.2.9", "web-9")],
       "ports": [{"port": 80, "protocol": "TCP"}]}],
     "10.244.1.2:80,10.244.1.3:80"),
    ("only not ready addresses",
     [{"notReadyAddresses": FIVE_READY, "ports": [{"port": 80, "protocol": "TCP"}]}],
     ""),
    ("every port of every address",
     [{"addresses": FIVE_READY[:2],
       "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                 {"name": "https", "port": 443, "protocol": "TCP"}]}],
     "10.244.1.2:80,10.244.1.3:80,10.244.1.2:443 + 1 more..."),
    ("several subsets",
     [{"addresses": FIVE_READY[:1], "ports": [{"port": 80, "protocol": "TCP"}]},
      {"addresses": FIVE_READY[1:2], "ports": [{"port": 8080, "protocol": "TCP"}]}],
     "10.244.1.2:80,10.244.1.3:8080"),
    ("headless without ports",
     [{"addresses": FIVE_READY[:4]}],
     "10.244.1.2,10.244.1.3,10.244.1.4 + 1 more..."),
    ("ipv6",
     [{"addresses": [{"ip": "fd00:10:244:1::5"}], "ports": [{"port": 80, "protocol": "TCP"}]}],
     "[fd00:10:244:1::5]:80"),
])
def test_endpoints(name, subsets, expected):
    assert cells("Endpoints", "", endpoints(subsets)) == ["web", expected, "5m12s"], name


def endpoint_slice(ports, endpoint_list, address_type="IPv4"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc12", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"},
                         "creationTimestamp": ago(312)},
            "addressType": address_type, "ports": ports, "endpoints": endpoint_list}


def slice_endpoint(ip, ready=True):
    return {"addresses": [ip], "conditions": {"ready": ready, "serving": ready,
                                              "terminating": False},
            "nodeName": "pk-worker", "targetRef": {"kind": "Pod", "name": "web-1"}}


@pytest.mark.parametrize("name, ports, endpoint_list, expected_ports, expected_endpoints", [
    ("one port, two endpoints",
     [{"name": "http", "port": 8080, "protocol": "TCP"}],
     [slice_endpoint("10.244.1.2"), slice_endpoint("10.244.2.3", ready=False)],
     "8080", "10.244.1.2,10.244.2.3"),
    ("more than three of each",
     [{"name": f"p{n}", "port": 8000 + n, "protocol": "TCP"} for n in range(5)],
     [slice_endpoint(f"10.244.1.{n}") for n in range(2, 8)],
     "8000,8001,8002 + 2 more...", "10.244.1.2,10.244.1.3,10.244.1.4 + 3 more..."),
    ("a port without a number shows its name, without either a star",
     [{"name": "http", "protocol": "TCP"}, {"protocol": "TCP"}],
     [slice_endpoint("10.244.1.2")],
     "http,*", "10.244.1.2"),
    ("empty", [], [], "<unset>", "<unset>"),
    ("null ports and endpoints", None, None, "<unset>", "<unset>"),
])
def test_endpoint_slice(name, ports, endpoint_list, expected_ports, expected_endpoints):
    assert cells("EndpointSlice", "discovery.k8s.io", endpoint_slice(ports, endpoint_list)) == \
        ["web-abc12", "IPv4", expected_ports, expected_endpoints, "5m12s"], name


# --- apps ----------------------------------------------------------------------------

def workload(kind, name, replicas, status, selector, containers=(("nginx", "nginx:1.27"),),
             node_selector=None):
    template_spec = {"containers": [{"name": n, "image": i} for n, i in containers]}
    if node_selector:
        template_spec["nodeSelector"] = node_selector
    spec = {"selector": selector, "template": {"metadata": {"labels": {"app": name}},
                                               "spec": template_spec}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ago(3 * DAY)},
            "spec": spec, "status": status}


WEB_SELECTOR = {"matchLabels": {"app": "web"}}


@pytest.mark.parametrize("name, obj, expected", [
    ("rolling out",
     workload("Deployment", "web", 3,
              {"replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2},
              WEB_SELECTOR),
     ["web", "2/3", 2, 2, "3d", "nginx", "nginx:1.27", "app=web"]),
    ("fresh, no status yet",
     workload("Deployment", "web", 1, {}, WEB_SELECTOR,
              containers=(("nginx", "nginx"), ("sidecar", "busybox"))),
     ["web", "0/1", 0, 0, "3d", "nginx,sidecar", "nginx,busybox", "app=web"]),
    ("selector with expressions",
     workload("Deployment", "api", 2,
              {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2},
              {"matchLabels": {"tier": "backend", "app": "api"},
               "matchExpressions": [{"key": "env", "operator": "In",
                                     "values": ["staging", "prod"]},
                                    {"key": "canary", "operator": "DoesNotExist"}]}),
     ["api", "2/2", 2, 2, "3d", "nginx", "nginx:1.27",
      "app=api,!canary,env in (prod,staging),tier=backend"]),
    ("invalid selector",
     workload("Deployment", "web", 1, {}, {"matchExpressions": [
         {"key": "app", "operator": "In", "values": []}]}),
     ["web", "0/1", 0, 0, "3d", "nginx", "nginx:1.27", "<invalid>"]),
    ("scaled to zero",
     workload("Deployment", "web", 0, {"observedGeneration": 2}, WEB_SELECTOR),
     ["web", "0/0", 0, 0, "3d", "nginx", "nginx:1.27", "app=web"]),
])
def test_deployment(name, obj, expected):
    assert cells("Deployment", "apps", obj) == expected, name


def test_replica_set():
    obj = workload("ReplicaSet", "web-7d4b9c8f6d", 3,
                   {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2,
                    "availableReplicas": 2},
                   {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c8f6d"}})
    assert cells("ReplicaSet", "apps", obj) == [
        "web-7d4b9c8f6d", 3, 3, 2, "3d", "nginx", "nginx:1.27",
        "app=web,pod-template-hash=7d4b9c8f6d"]


def test_old_replica_set_scaled_down():
    obj = workload("ReplicaSet", "web-5f6c7b8d9e", 0, {"replicas": 0},
                   {"matchLabels": {"app": "web", "pod-template-hash": "5f6c7b8d9e"}})
    assert cells("ReplicaSet", "apps", obj)[1:4] == [0, 0, 0]


def test_stateful_set():
    obj = workload("StatefulSet", "db", 3,
                   {"replicas": 3, "readyReplicas": 2, "currentReplicas": 3},
                   {"matchLabels": {"app": "db"}}, containers=(("postgres", "postgres:16"),))
    assert cells("StatefulSet", "apps", obj) == ["db", "2/3", "3d", "postgres", "postgres:16"]


def test_daemon_set():
    obj = workload("DaemonSet", "kube-proxy", None,
                   {"desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                    "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1,
                    "numberMisscheduled": 0, "observedGeneration": 1},
                   {"matchLabels": {"k8s-app": "kube-proxy"}},
                   containers=(("kube-proxy", "registry.k8s.io/kube-proxy:v1.32.0"),),
                   node_selector={"kubernetes.io/os": "linux"})
    obj["metadata"]["namespace"] = "kube-system"
    assert cells("DaemonSet", "apps", obj) == [
        "kube-proxy", 2, 2, 1, 2, 1, "kubernetes.io/os=linux", "3d", "kube-proxy",
        "registry.k8s.io/kube-proxy:v1.32.0", "k8s-app=kube-proxy"]


def test_daemon_set_without_node_selector_or_status():
    obj = workload("DaemonSet", "agent", None, {}, {"matchLabels": {"app": "agent"}})
    assert cells("DaemonSet", "apps", obj)[1:7] == [0, 0, 0, 0, 0, "<none>"]


# --- Node ----------------------------------------------------------------------------

def node(name, labels, ready="True", unschedulable=False, addresses=None, info=None):
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": labels, "creationTimestamp": ago(26 * 3600)},
           "spec": {"podCIDR": "10.244.0.0/24"},
           "status": {"conditions": [
               {"type": "MemoryPressure", "status": "False"},
               {"type": "DiskPressure", "status": "False"},
               {"type": "PIDPressure", "status": "False"}],
               "addresses": addresses if addresses is not None else [
                   {"type": "InternalIP", "address": "172.18.0.2"},
                   {"type": "Hostname", "address": name}],
               "nodeInfo": info if info is not None else {
                   "kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                   "kernelVersion": "6.1.0-18-amd64",
                   "containerRuntimeVersion": "pocketkube://0.1.0"}}}
    if ready is not None:
        obj["status"]["conditions"].append({"type": "Ready", "status": ready})
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


@pytest.mark.parametrize("name, obj, expected", [
    ("ready control plane",
     node("pk-control-plane", {"node-role.kubernetes.io/control-plane": "",
                               "kubernetes.io/hostname": "pk-control-plane"}),
     ["pk-control-plane", "Ready", "control-plane", "26h", "v1.32.0", "172.18.0.2", "<none>",
      "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "pocketkube://0.1.0"]),
    ("cordoned worker",
     node("pk-worker", {"kubernetes.io/hostname": "pk-worker"}, unschedulable=True),
     ["pk-worker", "Ready,SchedulingDisabled", "<none>", "26h", "v1.32.0", "172.18.0.2",
      "<none>", "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "pocketkube://0.1.0"]),
    ("not ready, several roles, external IP",
     node("pk-worker2", {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/": "",
                         "kubernetes.io/role": "ingress",
                         "node-role.kubernetes.io/edge": "true"},
          ready="False", addresses=[{"type": "ExternalIP", "address": "203.0.113.5"},
                                    {"type": "InternalIP", "address": "172.18.0.4"}]),
     ["pk-worker2", "NotReady", "edge,ingress,worker", "26h", "v1.32.0", "172.18.0.4",
      "203.0.113.5", "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64",
      "pocketkube://0.1.0"]),
    ("never reported",
     node("pk-new", {}, ready=None, unschedulable=True, addresses=[], info={}),
     ["pk-new", "Unknown,SchedulingDisabled", "<none>", "26h", "", "<none>", "<none>",
      "<unknown>", "<unknown>", "<unknown>"]),
])
def test_node(name, obj, expected):
    assert cells("Node", "", obj) == expected, name


# --- small core kinds ----------------------------------------------------------------

def meta(name, seconds=312, namespace="default"):
    m = {"name": name, "creationTimestamp": ago(seconds)}
    if namespace:
        m["namespace"] = namespace
    return m


@pytest.mark.parametrize("kind, group, obj, expected", [
    ("Namespace", "", {"metadata": meta("default", 40 * DAY, None),
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
     ["default", "Active", "40d"]),
    ("Namespace", "", {"metadata": {**meta("old", 600, None), "deletionTimestamp": ago(5)},
                       "status": {"phase": "Terminating"}},
     ["old", "Terminating", "10m"]),
    ("Secret", "", {"metadata": meta("web-tls"), "type": "kubernetes.io/tls",
                    "data": {"tls.crt": "LS0t", "tls.key": "LS0t"}},
     ["web-tls", "kubernetes.io/tls", 2, "5m12s"]),
    ("Secret", "", {"metadata": meta("empty"), "type": "Opaque"},
     ["empty", "Opaque", 0, "5m12s"]),
    ("ConfigMap", "", {"metadata": meta("kube-root-ca.crt"), "data": {"ca.crt": "-----BEGIN"}},
     ["kube-root-ca.crt", 1, "5m12s"]),
    ("ConfigMap", "", {"metadata": meta("mixed"), "data": {"a": "1", "b": "2"},
                       "binaryData": {"c": "AAE="}},
     ["mixed", 3, "5m12s"]),
    ("ServiceAccount", "", {"metadata": meta("default")}, ["default", 0, "5m12s"]),
    ("ServiceAccount", "", {"metadata": meta("builder"),
                            "secrets": [{"name": "builder-token"}]},
     ["builder", 1, "5m12s"]),
    ("Lease", "coordination.k8s.io",
     {"metadata": meta("pk-worker", 3600, "kube-node-lease"),
      "spec": {"holderIdentity": "pk-worker", "leaseDurationSeconds": 40,
               "renewTime": ago(3, micro=True)}},
     ["pk-worker", "pk-worker", "60m"]),
    ("Lease", "coordination.k8s.io", {"metadata": meta("unheld"), "spec": {}},
     ["unheld", "", "5m12s"]),
    ("Scale", "autoscaling", {"apiVersion": "autoscaling/v1", "kind": "Scale",
                              "metadata": meta("web"), "spec": {"replicas": 3},
                              "status": {"replicas": 2, "selector": "app=web"}},
     ["web", 3, 2, "5m12s"]),
])
def test_small_kinds(kind, group, obj, expected):
    assert cells(kind, group, obj) == expected


# --- Ingress, IngressClass -------------------------------------------------------------

def ingress(rules, tls=None, class_name="nginx", lb=None):
    spec = {"rules": rules}
    if class_name:
        spec["ingressClassName"] = class_name
    if tls:
        spec["tls"] = tls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta("web"),
            "spec": spec, "status": {"loadBalancer": lb or {}}}


def rule(host=None):
    r = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "web", "port": {"number": 80}}}}]}}
    if host:
        r["host"] = host
    return r


@pytest.mark.parametrize("name, obj, expected", [
    ("one host with TLS and an address",
     ingress([rule("web.example.com")], tls=[{"hosts": ["web.example.com"],
                                              "secretName": "web-tls"}],
             lb={"ingress": [{"ip": "172.18.0.3"}, {"ip": "172.18.0.2"}]}),
     ["web", "nginx", "web.example.com", "172.18.0.2,172.18.0.3", "80, 443", "5m12s"]),
    ("no host, no class, no address",
     ingress([rule()], class_name=None),
     ["web", "<none>", "*", "", "80", "5m12s"]),
    ("more than three rules",
     ingress([rule(f"h{n}.example.com") for n in range(5)]),
     ["web", "nginx", "h0.example.com,h1.example.com,h2.example.com + 2 more...", "", "80",
      "5m12s"]),
    ("rules without a host are skipped but counted",
     ingress([rule("a.example.com"), rule(), rule("b.example.com"), rule("c.example.com"),
              rule("d.example.com")]),
     ["web", "nginx", "a.example.com,b.example.com,c.example.com + 2 more...", "", "80",
      "5m12s"]),
    ("hostname address",
     ingress([rule("web.example.com")], lb={"ingress": [{"hostname": "lb.example.com"}]}),
     ["web", "nginx", "web.example.com", "lb.example.com", "80", "5m12s"]),
])
def test_ingress(name, obj, expected):
    assert cells("Ingress", "networking.k8s.io", obj) == expected, name


@pytest.mark.parametrize("parameters, expected", [
    (None, "<none>"),
    ({"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"},
     "IngressParameters.k8s.example.com/external-lb"),
    ({"kind": "ConfigMap", "name": "nginx-config", "scope": "Namespace",
      "namespace": "ingress-nginx"}, "ConfigMap/nginx-config"),
])
def test_ingress_class(parameters, expected):
    spec = {"controller": "k8s.io/ingress-nginx"}
    if parameters:
        spec["parameters"] = parameters
    obj = {"metadata": meta("nginx", 7200, None), "spec": spec}
    assert cells("IngressClass", "networking.k8s.io", obj) == \
        ["nginx", "k8s.io/ingress-nginx", expected, "120m"]


# --- Event ---------------------------------------------------------------------------

def core_event(**fields):
    obj = {"apiVersion": "v1", "kind": "Event",
           "metadata": {"name": "web-1.181a6b2c3d4e5f60", "namespace": "default",
                        "creationTimestamp": ago(35)},
           "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1",
                              "uid": "5c1e", "apiVersion": "v1", "resourceVersion": "812"},
           "reason": "Scheduled", "type": "Normal",
           "message": "Successfully assigned default/web-1 to pk-worker",
           "source": {"component": "default-scheduler"},
           "firstTimestamp": ago(35), "lastTimestamp": ago(35), "count": 1,
           "reportingComponent": "default-scheduler", "reportingInstance": ""}
    obj.update(fields)
    return obj


@pytest.mark.parametrize("name, obj, expected", [
    ("scheduler event",
     core_event(),
     ["35s", "Normal", "Scheduled", "pod/web-1", "", "default-scheduler",
      "Successfully assigned default/web-1 to pk-worker", "35s", 1, "web-1.181a6b2c3d4e5f60"]),
    ("repeated kubelet event on a container",
     core_event(reason="BackOff", type="Warning",
                message="Back-off restarting failed container app in pod web-1_default(5c1e)",
                involvedObject={"kind": "Pod", "name": "web-1",
                                "fieldPath": "spec.containers{app}"},
                source={"component": "kubelet", "host": "pk-worker"},
                firstTimestamp=ago(300), lastTimestamp=ago(10), count=14),
     ["10s", "Warning", "BackOff", "pod/web-1", "spec.containers{app}", "kubelet, pk-worker",
      "Back-off restarting failed container app in pod web-1_default(5c1e)", "5m", 14,
      "web-1.181a6b2c3d4e5f60"]),
    ("event with series and no legacy timestamps",
     core_event(firstTimestamp=None, lastTimestamp=None, count=None, source={},
                eventTime=ago(600, micro=True), reportingComponent="kubelet",
                reportingInstance="pk-worker",
                series={"count": 12, "lastObservedTime": ago(20, micro=True)},
                reason="Unhealthy", type="Warning",
                message="Readiness probe failed: HTTP probe failed with statuscode: 503\n"),
     ["20s", "Warning", "Unhealthy", "pod/web-1", "", "kubelet, pk-worker",
      "Readiness probe failed: HTTP probe failed with statuscode: 503", "10m", 12,
      "web-1.181a6b2c3d4e5f60"]),
    ("singleton new-style event gets count 1",
     core_event(firstTimestamp=None, lastTimestamp=None, count=0,
                eventTime=ago(90, micro=True), source={},
                reportingComponent="deployment-controller"),
     ["90s", "Normal", "Scheduled", "pod/web-1", "", "deployment-controller",
      "Successfully assigned default/web-1 to pk-worker", "90s", 1, "web-1.181a6b2c3d4e5f60"]),
    ("involved object without a name",
     core_event(involvedObject={"kind": "Node"}, lastTimestamp=None),
     ["35s", "Normal", "Scheduled", "node", "", "default-scheduler",
      "Successfully assigned default/web-1 to pk-worker", "35s", 1, "web-1.181a6b2c3d4e5f60"]),
])
def test_core_event(name, obj, expected):
    assert cells("Event", "", obj) == expected, name


def test_events_k8s_io_event_prints_like_its_core_form():
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": "web.181a6b2c3d4e5f61", "namespace": "default",
                        "creationTimestamp": ago(400)},
           "eventTime": ago(400, micro=True),
           "series": {"count": 3, "lastObservedTime": ago(15, micro=True)},
           "reportingController": "deployment-controller",
           "reportingInstance": "deployment-controller-pk",
           "action": "Scaling", "reason": "ScalingReplicaSet", "type": "Normal",
           "regarding": {"kind": "Deployment", "namespace": "default", "name": "web",
                         "apiVersion": "apps/v1"},
           "note": "Scaled up replica set web-7d4b9c8f6d to 3 from 1"}
    expected = ["15s", "Normal", "ScalingReplicaSet", "deployment/web", "",
                "deployment-controller, deployment-controller-pk",
                "Scaled up replica set web-7d4b9c8f6d to 3 from 1", "6m40s", 3,
                "web.181a6b2c3d4e5f61"]
    assert cells("Event", "events.k8s.io", new) == expected


def test_events_k8s_io_event_with_deprecated_fields():
    new = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": "n1.1", "namespace": "default", "creationTimestamp": ago(60)},
           "regarding": {"kind": "Node", "name": "pk-worker"}, "reason": "Starting",
           "type": "Normal", "note": "Starting kubelet.",
           "deprecatedSource": {"component": "kubelet", "host": "pk-worker"},
           "deprecatedFirstTimestamp": ago(60), "deprecatedLastTimestamp": ago(30),
           "deprecatedCount": 2}
    assert cells("Event", "events.k8s.io", new) == [
        "30s", "Normal", "Starting", "node/pk-worker", "", "kubelet, pk-worker",
        "Starting kubelet.", "60s", 2, "n1.1"]


# --- the default convertor -------------------------------------------------------------

def test_default_convertor():
    objs = [{"metadata": {"name": "w1", "creationTimestamp": "2025-01-15T11:55:00Z"}},
            {"metadata": {"name": "w2", "creationTimestamp": "2025-01-15T11:55:00.123456Z"}},
            {"metadata": {"name": "w3", "creationTimestamp": "2025-01-15T13:55:00+02:00"}},
            {"metadata": {"name": "w4"}}]
    columns, rows = table_for("Widget", "example.com", objs, NOW)
    assert [(c["name"], c["type"], c["format"]) for c in columns] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    assert rows == [["w1", "2025-01-15T11:55:00Z"], ["w2", "2025-01-15T11:55:00Z"],
                    ["w3", "2025-01-15T11:55:00Z"], ["w4", "0001-01-01T00:00:00Z"]]


def test_one_row_per_object_in_order():
    objs = [{"metadata": meta(f"cm-{n}"), "data": {"k": "v"} if n else {}} for n in range(3)]
    _, rows = table_for("ConfigMap", "", objs, NOW)
    assert rows == [["cm-0", 0, "5m12s"], ["cm-1", 1, "5m12s"], ["cm-2", 1, "5m12s"]]


# --- selector cells --------------------------------------------------------------------

@pytest.mark.parametrize("selector, expected", [
    ({"matchLabels": {"pod-template-hash": "7d4b9c8f6d", "app": "web"}},
     "app=web,pod-template-hash=7d4b9c8f6d"),
    ({"matchLabels": {"app": "web"},
      "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev", "ci"]},
                           {"key": "canary", "operator": "Exists"}]},
     "app=web,canary,env notin (ci,dev)"),
    ({}, "<none>"),  # FormatLabelSelector prints an empty selector as <none>
    ({"matchExpressions": [{"key": "tier", "operator": "Bogus", "values": ["x"]}]}, "<error>"),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}, "<error>"),
])
def test_replica_set_and_daemon_set_selector_cells(selector, expected):
    rs = workload("ReplicaSet", "web-7d4b9c8f6d", 1, {}, selector)
    ds = workload("DaemonSet", "agent", None, {}, selector)
    assert cells("ReplicaSet", "apps", rs)[-1] == expected
    assert cells("DaemonSet", "apps", ds)[-1] == expected


@pytest.mark.parametrize("selector, expected", [
    (None, ""),  # LabelSelectorAsSelector(nil) is labels.Nothing(), whose String() is ""
    ({}, ""),
    ({"matchLabels": {"app": "bad value!"}}, "<invalid>"),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn"}]}, "<invalid>"),
])
def test_deployment_selector_cell_edge_cases(selector, expected):
    deploy = workload("Deployment", "web", 1, {}, selector)
    assert cells("Deployment", "apps", deploy)[-1] == expected
