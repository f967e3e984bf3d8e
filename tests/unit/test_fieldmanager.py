"""managedFields on writes and server-side apply (pocketkube.apiserver.fieldmanager)."""

from __future__ import annotations

import copy
import json

import pytest

from pocketkube.apiserver import fieldmanager as fm
from pocketkube.core.errors import APIError

T0 = "2026-11-21T10:00:00Z"
T1 = "2026-11-21T10:05:00Z"
T2 = "2026-11-21T10:10:00Z"


def deployment_as_created() -> dict:
    """`kubectl create deployment web --image=nginx` after decoding and defaulting."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "uid": "u-1", "resourceVersion": "1", "generation": 1,
                     "creationTimestamp": "2026-11-21T10:00:00Z"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "resources": {},
                                    "terminationMessagePath": "/dev/termination-log",
                                    "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler",
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        },
        "status": {},
    }


def service_with_two_ports() -> dict:
    """`kubectl create -f svc.yaml` with two ports, after defaulting (before IP allocation)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                      {"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443}],
            "selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


def with_managed(obj: dict, entries: list[dict]) -> dict:
    out = copy.deepcopy(obj)
    out["metadata"]["managedFields"] = entries
    return out


def entry(entries: list[dict], manager: str, operation: str = "Update") -> dict:
    found = [e for e in entries if e["manager"] == manager and e["operation"] == operation]
    assert len(found) == 1, entries
    return found[0]


# ---------------------------------------------------------------------------------------
# Update entries


def test_create_gives_one_update_entry_shaped_like_a_real_cluster():
    entries = fm.update_managed_fields(None, deployment_as_created(), "kubectl-create", "Update", "apps/v1", T0)
    assert entries == [{
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
                "f:selector": {},
                "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                               "f:type": {}},
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {'k:{"name":"nginx"}': {
                            ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                        "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                        "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                    },
                },
            },
        },
    }]


def test_service_with_two_ports_trie_is_the_real_one_in_order():
    entries = fm.update_managed_fields(None, service_with_two_ports(), "kubectl-create", "Update", "v1", T0)
    fields = entries[0]["fieldsV1"]
    expected_ports = {
        ".": {},
        'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}},
        'k:{"port":443,"protocol":"TCP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}},
    }
    assert fields == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:internalTrafficPolicy": {}, "f:ports": expected_ports, "f:selector": {},
                   "f:sessionAffinity": {}, "f:type": {}},
    }
    # Serialized as structured-merge-diff does: "." first, keys by value (80 before 443).
    assert list(fields["f:spec"]["f:ports"]) == list(expected_ports)
    assert json.dumps(fields["f:spec"]["f:ports"]).startswith('{".": {}, "k:{\\"port\\":80,')


def test_patch_moves_the_patched_fields_to_the_patch_manager():
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    patched = copy.deepcopy(live)
    patched["spec"]["type"] = "NodePort"
    patched["spec"]["externalTrafficPolicy"] = "Cluster"  # defaulted with the new type

    entries = fm.update_managed_fields(live, patched, "kubectl-patch", "Update", "v1", T1)

    assert [e["manager"] for e in entries] == ["kubectl-create", "kubectl-patch"]
    patch_entry = entry(entries, "kubectl-patch")
    assert patch_entry["time"] == T1
    assert patch_entry["fieldsV1"] == {"f:spec": {"f:externalTrafficPolicy": {}, "f:type": {}}}
    create_entry = entry(entries, "kubectl-create")
    assert create_entry["time"] == T0
    assert "f:type" not in create_entry["fieldsV1"]["f:spec"]
    assert "f:sessionAffinity" in create_entry["fieldsV1"]["f:spec"]


def test_a_managers_later_updates_merge_into_its_entry():
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    first = copy.deepcopy(live)
    first["metadata"]["labels"]["tier"] = "front"
    live = with_managed(first, fm.update_managed_fields(live, first, "kubectl-label", "Update", "v1", T1))
    second = copy.deepcopy(live)
    second["metadata"]["labels"]["env"] = "prod"
    entries = fm.update_managed_fields(live, second, "kubectl-label", "Update", "v1", T2)
    label_entry = entry(entries, "kubectl-label")
    assert label_entry["time"] == T2
    assert label_entry["fieldsV1"] == {"f:metadata": {"f:labels": {"f:env": {}, "f:tier": {}}}}


def test_removed_fields_leave_every_entry_and_empty_entries_go():
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["tier"] = "front"
    live = with_managed(labelled, fm.update_managed_fields(live, labelled, "kubectl-label", "Update", "v1", T1))
    unlabelled = copy.deepcopy(live)
    del unlabelled["metadata"]["labels"]["tier"]
    entries = fm.update_managed_fields(live, unlabelled, "kubectl-label", "Update", "v1", T2)
    assert [e["manager"] for e in entries] == ["kubectl-create"]


def test_status_write_gets_its_own_entry_with_subresource_status():
    created = deployment_as_created()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "apps/v1", T0))
    status_write = copy.deepcopy(live)
    status_write["status"] = {"observedGeneration": 1, "replicas": 1,
                              "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"}]}
    status_write["spec"]["replicas"] = 5  # a /status write never owns spec

    entries = fm.update_managed_fields(live, status_write, "kube-controller-manager", "Update", "apps/v1", T1,
                                       subresource="status")

    status_entry = entry(entries, "kube-controller-manager")
    assert status_entry["subresource"] == "status"
    assert status_entry["fieldsV1"] == {"f:status": {
        "f:conditions": {".": {}, 'k:{"type":"Progressing"}': {
            ".": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
        "f:observedGeneration": {}, "f:replicas": {}}}
    assert "f:replicas" in entry(entries, "kubectl-create")["fieldsV1"]["f:spec"]


def test_main_resource_write_never_owns_status():
    created = deployment_as_created()
    created["status"] = {"replicas": 3}
    entries = fm.update_managed_fields(None, created, "kubectl-create", "Update", "apps/v1", T0)
    assert "f:status" not in entries[0]["fieldsV1"]


def test_kinds_without_status_subresource_own_everything():
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "default"},
             "involvedObject": {"kind": "Pod", "name": "web-1"}, "reason": "Scheduled",
             "source": {"component": "default-scheduler"}}
    entries = fm.update_managed_fields(None, event, "kube-scheduler", "Update", "v1", T0)
    assert entries[0]["fieldsV1"] == {"f:involvedObject": {}, "f:reason": {},
                                     "f:source": {"f:component": {}}}


def test_no_change_keeps_entries_and_times():
    created = service_with_two_ports()
    entries = fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0)
    live = with_managed(created, entries)
    again = copy.deepcopy(live)
    again["metadata"]["resourceVersion"] = "7"  # never owned
    assert fm.update_managed_fields(live, again, "kubectl-replace", "Update", "v1", T1) == entries


@pytest.mark.parametrize("requested", [[], [{}]])
def test_request_can_reset_managed_fields(requested):
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = requested
    assert fm.update_managed_fields(live, reset, "kubectl-edit", "Update", "v1", T1) == []


def test_owner_references_and_finalizers_use_their_list_types():
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-", "namespace": "default",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                             "uid": "rs-uid", "controller": True}],
                        "finalizers": ["example.com/keep"]},
           "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}
    fields = fm.update_managed_fields(None, pod, "kube-controller-manager", "Update", "v1", T0)[0]["fieldsV1"]
    assert fields["f:metadata"] == {
        "f:finalizers": {".": {}, 'v:"example.com/keep"': {}},
        "f:generateName": {},
        "f:ownerReferences": {".": {}, 'k:{"uid":"rs-uid"}': {}},
    }
    assert fields["f:spec"]["f:containers"]['k:{"name":"nginx"}']["f:ports"] == {
        ".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}}


def test_update_rejects_apply_operation():
    with pytest.raises(ValueError):
        fm.update_managed_fields(None, service_with_two_ports(), "x", "Apply", "v1", T0)


# ---------------------------------------------------------------------------------------
# Server-side apply


def applied_deployment(replicas: int | None = 3, image: str = "nginx:1.27") -> dict:
    spec: dict = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": image,
                                              "ports": [{"containerPort": 80}]}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec}


def test_apply_creates_with_an_apply_entry():
    result = fm.apply(None, applied_deployment(), "kubectl", False, "apps/v1", T0)
    assert result["spec"]["replicas"] == 3
    assert result["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {
            "f:replicas": {}, "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
                }}},
            },
        }},
    }]


def test_reapply_without_a_field_removes_it():
    live = fm.apply(None, applied_deployment(), "kubectl", False, "apps/v1", T0)
    result = fm.apply(live, applied_deployment(replicas=None), "kubectl", False, "apps/v1", T1)
    assert "replicas" not in result["spec"]
    apply_entry = entry(result["metadata"]["managedFields"], "kubectl", "Apply")
    assert "f:replicas" not in apply_entry["fieldsV1"]["f:spec"]
    assert apply_entry["time"] == T1


def test_reapply_without_a_field_another_manager_owns_keeps_it():
    live = fm.apply(None, applied_deployment(), "kubectl", False, "apps/v1", T0)
    shared = fm.apply(live, applied_deployment(replicas=3), "ops-tool", False, "apps/v1", T1)
    result = fm.apply(shared, applied_deployment(replicas=None), "kubectl", False, "apps/v1", T2)
    assert result["spec"]["replicas"] == 3
    assert "f:replicas" in entry(result["metadata"]["managedFields"], "ops-tool", "Apply")["fieldsV1"]["f:spec"]


def test_reapply_without_a_container_removes_the_whole_item():
    config = applied_deployment()
    config["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = fm.apply(None, config, "kubectl", False, "apps/v1", T0)
    result = fm.apply(live, applied_deployment(), "kubectl", False, "apps/v1", T1)
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_applying_a_value_another_applier_owns_is_a_conflict():
    live = fm.apply(None, applied_deployment(replicas=3), "alice", False, "apps/v1", T0)
    with pytest.raises(APIError) as caught:
        fm.apply(live, applied_deployment(replicas=5), "bob", False, "apps/v1", T1)
    err = caught.value
    assert err.code == 409
    assert err.reason == "Conflict"
    assert err.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert err.status()["details"] == {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"}]}


def test_conflict_with_an_update_manager_names_its_api_version():
    created = deployment_as_created()
    created["spec"]["replicas"] = 2
    live = with_managed(created, fm.update_managed_fields(
        None, created, "kubectl-client-side-apply", "Update", "apps/v1", T0))
    with pytest.raises(APIError) as caught:
        fm.apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                        "spec": {"replicas": 5}}, "kubectl", False, "apps/v1", T1)
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas')
    assert caught.value.status()["details"]["causes"] == [{
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1', "field": ".spec.replicas"}]


def test_several_conflicts_are_listed_per_manager():
    live = fm.apply(None, applied_deployment(replicas=3), "alice", False, "apps/v1", T0)
    with pytest.raises(APIError) as caught:
        fm.apply(live, applied_deployment(replicas=5, image="nginx:1.28"), "bob", False, "apps/v1", T1)
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c["field"] for c in caught.value.status()["details"]["causes"]] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']


def test_applying_the_same_value_shares_ownership():
    live = fm.apply(None, applied_deployment(replicas=3), "alice", False, "apps/v1", T0)
    result = fm.apply(live, applied_deployment(replicas=3), "bob", False, "apps/v1", T1)
    entries = result["metadata"]["managedFields"]
    assert "f:replicas" in entry(entries, "alice", "Apply")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(entries, "bob", "Apply")["fieldsV1"]["f:spec"]
    # Nothing changed in the object, so bob's entry has no time (as in Kubernetes).
    assert "time" not in entry(entries, "bob", "Apply")


def test_force_takes_ownership():
    live = fm.apply(None, applied_deployment(replicas=3), "alice", False, "apps/v1", T0)
    result = fm.apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                             "spec": {"replicas": 5}}, "bob", True, "apps/v1", T1)
    assert result["spec"]["replicas"] == 5
    entries = result["metadata"]["managedFields"]
    assert entry(entries, "bob", "Apply") == {
        "manager": "bob", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    assert "f:replicas" not in entry(entries, "alice", "Apply")["fieldsV1"]["f:spec"]
    assert [e["manager"] for e in entries] == ["alice", "bob"]  # Apply entries by time


def test_containers_merge_by_name():
    created = deployment_as_created()
    created["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"]})
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "apps/v1", T0))
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"template": {"spec": {"containers": [
                  {"name": "sidecar", "image": "busybox:1.36"}, {"name": "logger", "image": "fluent-bit"}]}}}}
    result = fm.apply(live, config, "team-b", True, "apps/v1", T1)
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx", "sidecar", "logger"]
    assert containers[0]["image"] == "nginx"
    assert containers[1] == {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "3600"]}


def test_service_ports_merge_by_port_and_protocol():
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    config = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
              "spec": {"ports": [{"port": 443, "targetPort": 9443},  # protocol defaults to TCP
                                 {"port": 53, "protocol": "UDP", "name": "dns"}]}}
    result = fm.apply(live, config, "netops", True, "v1", T1)
    ports = result["spec"]["ports"]
    assert [(p["port"], p["protocol"]) for p in ports] == [(80, "TCP"), (443, "TCP"), (53, "UDP")]
    assert ports[1]["targetPort"] == 9443 and ports[1]["name"] == "https"
    netops = entry(result["metadata"]["managedFields"], "netops", "Apply")["fieldsV1"]
    assert netops == {"f:spec": {"f:ports": {
        'k:{"port":443,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}},
        'k:{"port":53,"protocol":"UDP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}}}}}
    create_ports = entry(result["metadata"]["managedFields"], "kubectl-create")["fieldsV1"]["f:spec"]["f:ports"]
    assert "f:targetPort" not in create_ports['k:{"port":443,"protocol":"TCP"}']


def test_finalizers_merge_as_a_set_and_maps_merge_by_key():
    live = fm.apply(None, {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "c", "finalizers": ["a"], "labels": {"x": "1"}},
                           "data": {"k1": "v1"}}, "one", False, "v1", T0)
    result = fm.apply(live, {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c", "finalizers": ["b"], "labels": {"y": "2"}},
                             "data": {"k2": "v2"}}, "two", False, "v1", T1)
    assert result["metadata"]["finalizers"] == ["a", "b"]
    assert result["metadata"]["labels"] == {"x": "1", "y": "2"}
    assert result["data"] == {"k1": "v1", "k2": "v2"}


def test_applied_null_clears_a_field():
    live = fm.apply(None, applied_deployment(replicas=3), "kubectl", False, "apps/v1", T0)
    config = applied_deployment()
    config["spec"]["replicas"] = None
    result = fm.apply(live, config, "kubectl", False, "apps/v1", T1)
    assert "replicas" not in result["spec"]


def test_noop_apply_keeps_object_and_time():
    live = fm.apply(None, applied_deployment(), "kubectl", False, "apps/v1", T0)
    result = fm.apply(live, applied_deployment(), "kubectl", False, "apps/v1", T1)
    assert result == live


def test_kubectl_takes_over_fields_from_client_side_apply_unchanged_since():
    last_applied = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"annotations": {}, "name": "web", "namespace": "default"},
                    "spec": {"replicas": 2}}
    created = deployment_as_created()
    created["spec"]["replicas"] = 2
    created["metadata"]["annotations"] = {fm.LAST_APPLIED_ANNOTATION: json.dumps(last_applied) + "\n"}
    live = with_managed(created, fm.update_managed_fields(
        None, created, "kubectl-client-side-apply", "Update", "apps/v1", T0))
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 4}}

    result = fm.apply(live, config, "kubectl", False, "apps/v1", T1)

    assert result["spec"]["replicas"] == 4
    assert json.loads(result["metadata"]["annotations"][fm.LAST_APPLIED_ANNOTATION]) == config
    with pytest.raises(APIError):  # any other manager still conflicts
        fm.apply(live, config, "other", False, "apps/v1", T1)


def test_apply_refuses_bad_patches():
    with pytest.raises(APIError) as caught:
        fm.apply(None, {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}},
                 "kubectl", False, "apps/v1", T0, kind="Deployment")
    assert (caught.value.code, caught.value.message) == (400, "invalid object type: apps/v1beta1, Kind=Deployment")

    with pytest.raises(APIError) as caught:
        fm.apply(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": []}},
                 "kubectl", False, "v1", T0)
    assert (caught.value.code, caught.value.message) == (400, "metadata.managedFields must be nil")

    duplicate = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                 "spec": {"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]}}
    with pytest.raises(APIError) as caught:
        fm.apply(None, duplicate, "kubectl", False, "v1", T0)
    assert caught.value.code == 500
    assert caught.value.message == (
        'failed to create typed patch object (default/web; /v1, Kind=Service): '
        '.spec.ports: duplicate entries for key [port=80,protocol="TCP"]')

    keyless = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"ports": [{"targetPort": 80}]}}
    with pytest.raises(APIError) as caught:
        fm.apply(None, keyless, "kubectl", False, "v1", T0)
    assert caught.value.message.endswith(
        '.spec.ports: element 0: associative list with keys has an element that omits key field "port" '
        "(and doesn't have default value)")


def test_apply_entries_come_before_update_entries():
    created = service_with_two_ports()
    live = with_managed(created, fm.update_managed_fields(None, created, "kubectl-create", "Update", "v1", T0))
    result = fm.apply(live, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"a": "b"}}},
                      "zeta", False, "v1", T1)
    assert [(e["manager"], e["operation"]) for e in result["metadata"]["managedFields"]] == [
        ("zeta", "Apply"), ("kubectl-create", "Update")]


# ---------------------------------------------------------------------------------------
# FieldsV1 format


def test_fields_v1_round_trip_and_path_text():
    fields = fm.fields_v1(service_with_two_ports(), "Service")
    paths = fm.decode_fields(fields)
    assert fm.encode_fields(paths) == fields
    texts = sorted(fm.path_string(p) for p in paths)
    assert '.spec.ports[port=443,protocol="TCP"].targetPort' in texts
    assert ".metadata.labels.app" in texts
    assert ".metadata.name" not in texts and ".kind" not in texts


def test_decode_rejects_unknown_elements():
    with pytest.raises(ValueError):
        fm.decode_fields({"x:foo": {}})


def test_scale_takes_replicas_from_the_applier_and_then_conflicts():
    live = fm.apply(None, applied_deployment(replicas=2), "kubectl", False, "apps/v1", T0)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 4
    scaled["metadata"]["managedFields"] = fm.update_managed_fields(
        live, scaled, "kubectl", "Update", "apps/v1", T1, subresource="scale")
    scale_entry = entry(scaled["metadata"]["managedFields"], "kubectl", "Update")
    assert (scale_entry["subresource"], scale_entry["fieldsV1"]) == ("scale", {"f:spec": {"f:replicas": {}}})
    assert "f:replicas" not in entry(scaled["metadata"]["managedFields"], "kubectl", "Apply")["fieldsV1"]["f:spec"]

    with pytest.raises(APIError) as caught:
        fm.apply(scaled, applied_deployment(replicas=2), "kubectl", False, "apps/v1", T2)
    assert caught.value.message == ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
                                    "using apps/v1: .spec.replicas")
    # Leaving replicas out of the config keeps the scaled value: nobody prunes it.
    result = fm.apply(scaled, applied_deployment(replicas=None), "kubectl", False, "apps/v1", T2)
    assert result["spec"]["replicas"] == 4


def test_update_takes_a_field_from_the_applier():
    live = fm.apply(None, applied_deployment(image="nginx:1.27"), "kubectl", False, "apps/v1", T0)
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    entries = fm.update_managed_fields(live, edited, "kubectl-edit", "Update", "apps/v1", T1)
    container = 'k:{"name":"nginx"}'
    assert entry(entries, "kubectl-edit")["fieldsV1"] == {"f:spec": {"f:template": {"f:spec": {"f:containers": {
        container: {"f:image": {}}}}}}}
    applier = entry(entries, "kubectl", "Apply")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert "f:image" not in applier[container]
