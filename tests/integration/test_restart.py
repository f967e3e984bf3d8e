"""The SQLite datastore: what the server acknowledged survives kill -9 and a restart, and
resourceVersions keep growing so clients never see one go backwards."""

from __future__ import annotations

import signal

from tests.conftest import start_server


def test_objects_survive_kill_9(tmp_path):
    srv = start_server(str(tmp_path), datastore="sqlite")
    try:
        srv.kubectl("create", "deployment", "keep", "--image=nginx")
        srv.kubectl("create", "configmap", "cfg", "--from-literal=a=b")
        before = srv.kubectl_json("get", "cm", "cfg")
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
    finally:
        srv.stop()
    again = start_server(str(tmp_path), datastore="sqlite")
    try:
        assert again.kubectl("get", "deploy", "keep", "-o", "name").stdout.strip() == "deployment.apps/keep"
        after = again.kubectl_json("get", "cm", "cfg")
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        again.kubectl("create", "configmap", "new", "--from-literal=a=b")
        new_rv = int(again.kubectl_json("get", "cm", "new")["metadata"]["resourceVersion"])
        assert new_rv > int(before["metadata"]["resourceVersion"])
        names = again.kubectl("get", "ns", "-o", "name").stdout.split()
        assert names.count("namespace/default") == 1
    finally:
        again.stop()
