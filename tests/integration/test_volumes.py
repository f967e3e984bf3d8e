"""PersistentVolumeClaims and PersistentVolumes with the real kubectl against `pocketkube
server`: stored with their defaults, printed with kubectl's columns, validated with the API
server's messages, listed and deleted (as the StatefulSet e2e framework's clean-up does).
Nothing binds or provisions them: both stay Pending.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("server")

CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
VOLUME = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-x"},
          "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                   "hostPath": {"path": "/tmp/pv-x"}, "storageClassName": "manual"}}


def test_a_claim_is_stored_pending_and_printed(server, ns):
    server.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(CLAIM))
    claim = server.kubectl_json("get", "pvc", "data", "-n", ns)
    assert claim["spec"]["volumeMode"] == "Filesystem"
    assert claim["status"] == {"phase": "Pending"}
    out = server.kubectl("get", "pvc", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS",
                              "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert out[1].split()[:3] == ["data", "Pending", "<unset>"]
    server.kubectl("delete", "pvc", "--all", "-n", ns)
    assert server.kubectl_json("get", "pvc", "-n", ns)["items"] == []


def test_a_claim_without_modes_or_size_is_invalid(server, ns):
    bad = {**CLAIM, "spec": {"resources": {}}}
    cp = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert cp.returncode == 1
    assert ('The PersistentVolumeClaim "data" is invalid: \n'
            '* spec.accessModes: Required value: at least 1 access mode is required\n'
            '* spec.resources[storage]: Required value') in cp.stderr


def test_a_claims_spec_is_immutable_but_its_request_may_grow(server, ns):
    server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(CLAIM))
    server.kubectl("patch", "pvc", "data", "-n", ns, "-p", '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}')
    cp = server.kubectl("patch", "pvc", "data", "-n", ns, "-p", '{"spec":{"accessModes":["ReadWriteMany"]}}',
                        check=False)
    assert "spec: Forbidden: spec is immutable after creation except resources.requests" in cp.stderr


def test_a_volume_is_cluster_wide_with_its_defaults(server):
    server.kubectl("create", "-f", "-", input=json.dumps(VOLUME))
    try:
        pv = server.kubectl_json("get", "pv", "pv-x")
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert pv["status"]["phase"] == "Pending"
        row = server.kubectl("get", "pv", "pv-x", "--no-headers").stdout.split()
        assert row[:6] == ["pv-x", "5Gi", "RWO,ROX", "Retain", "Pending", "manual"]
        cp = server.kubectl("create", "-f", "-", check=False, input=json.dumps(
            {**VOLUME, "metadata": {"name": "pv-y"}, "spec": {"capacity": {"storage": "1Gi"},
                                                                "accessModes": ["ReadWriteOnce"]}}))
        assert "spec: Required value: must specify a volume type" in cp.stderr
    finally:
        server.kubectl("delete", "pv", "pv-x", check=False)
