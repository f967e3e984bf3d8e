"""Kinds that are stored and printed but not acted on, with the real kubectl:
PodDisruptionBudget, PriorityClass (and the system ones), PersistentVolumeClaim (Pending) and
HorizontalPodAutoscaler (autoscaling/v2, and v1 as `kubectl autoscale` writes it)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("server")


def test_pod_disruption_budget(server, ns):
    server.kubectl("create", "pdb", "p", "--selector=app=web", "--min-available=2", "-n", ns)
    lines = server.kubectl("get", "pdb", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]
    assert lines[1].split()[:4] == ["p", "2", "N/A", "0"]
    bad = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both"},
           "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert "minAvailable and maxUnavailable cannot be both set" in cp.stderr


def test_priority_classes(server):
    rows = server.kubectl("get", "priorityclasses").stdout.splitlines()
    assert rows[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    names = {r.split()[0]: r.split()[1] for r in rows[1:]}
    assert names["system-node-critical"] == "2000001000" and names["system-cluster-critical"] == "2000000000"
    cp = server.kubectl("create", "priorityclass", "system-mine", "--value=5", check=False)
    assert "priority class names with 'system-' prefix are reserved for system use only" in cp.stderr
    server.kubectl("create", "priorityclass", "batch-low", "--value=5", "--preemption-policy=Never")
    assert server.kubectl_json("get", "pc", "batch-low")["preemptionPolicy"] == "Never"
    server.kubectl("delete", "pc", "batch-low")


def test_persistent_volume_claim_stays_pending(server, ns):
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pvc))
    lines = server.kubectl("get", "pvc", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                                "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert lines[1].split()[:3] == ["data", "Pending", "<unset>"]
    del pvc["spec"]["accessModes"]
    pvc["metadata"]["name"] = "bad"
    cp = server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pvc), check=False)
    assert "spec.accessModes: Required value: at least 1 access mode is required" in cp.stderr


def test_horizontal_pod_autoscaler(server, ns):
    server.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    server.kubectl("autoscale", "deployment", "web", "--max=5", "--cpu-percent=60", "-n", ns)
    lines = server.kubectl("get", "hpa", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert lines[1].split()[:7] == ["web", "Deployment/web", "cpu:", "<unknown>/60%", "1", "5", "0"]
    v2 = server.kubectl_json("get", "hpa", "web", "-n", ns)
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    v1 = json.loads(server.kubectl("get", "--raw", f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers/web"
                                   ).stdout)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 60 and "metrics" not in v1["spec"]
