"""The watch cache shares one read-only `{}` for the empty leaves of managedFields' FieldsV1
tries (pocketkube/apiserver/cache.py): the objects read the same, serialize the same, copy
into plain dicts, and refuse a write to the shared leaf."""

import copy
import pickle

import orjson
import pytest

from pocketkube.apiserver import cache
from pocketkube.apiserver.fieldmanager import decode_fields
from pocketkube.apiserver.patch import merge_patch

SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                 "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                                    "fieldsType": "FieldsV1", "fieldsV1": {
                                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                        "f:spec": {"f:ports": {".": {}, 'k:{"port":80,"protocol":"TCP"}': {
                                            ".": {}, "f:port": {}, "f:protocol": {}}}, "f:selector": {}}}}]},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}], "other": {}},
}


def decoded() -> dict:
    return cache._decode(orjson.dumps(SERVICE), 7)


def test_the_empty_leaves_are_one_shared_object_and_nothing_else_changes():
    obj, again = decoded(), decoded()
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:metadata"]["f:labels"]["."] is cache.SHARED_EMPTY
    assert again["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:selector"] is cache.SHARED_EMPTY
    assert type(obj["spec"]["other"]) is dict  # only FieldsV1 tries are touched
    expected = copy.deepcopy(SERVICE)
    expected["metadata"]["resourceVersion"] = "7"
    assert obj == expected
    assert orjson.loads(orjson.dumps(obj)) == expected
    assert decode_fields(fields) == decode_fields(SERVICE["metadata"]["managedFields"][0]["fieldsV1"])


def test_the_shared_leaf_refuses_writes_and_copies_into_plain_dicts():
    leaf = decoded()["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:selector"]
    for write in (lambda: leaf.__setitem__("x", 1), lambda: leaf.update(x=1), lambda: leaf.setdefault("x"),
                  lambda: leaf.pop("x"), lambda: leaf.clear()):
        with pytest.raises(TypeError):
            write()
    assert cache.SHARED_EMPTY == {}
    for copied in (copy.copy(leaf), copy.deepcopy(leaf), pickle.loads(pickle.dumps(leaf))):
        assert type(copied) is dict and copied == {}
        copied["x"] = 1
    assert cache.SHARED_EMPTY == {}


def test_a_patch_of_a_cached_object_writes_its_own_copy():
    obj = decoded()
    patched = merge_patch(obj, {"metadata": {"managedFields": [{"fieldsV1": {"f:spec": {"f:selector": {"f:x": {}}}}}]}})
    assert patched["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:selector"] == {"f:x": {}}
    assert cache.SHARED_EMPTY == {}
    deep = copy.deepcopy(obj)
    deep["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:selector"]["f:y"] = {}
    assert cache.SHARED_EMPTY == {}
