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


def test_watch_from_before_a_restart_is_410_expired(tmp_path):
    """The watch cache starts at the store's revision; older history is gone, as after a
    kube-apiserver restart, so a watch from an older revision gets 410 and clients re-list."""
    import http.client
    import json
    import ssl
    from urllib.parse import urlparse

    srv = start_server(str(tmp_path), datastore="sqlite")
    try:
        srv.kubectl("create", "configmap", "a", "--from-literal=a=b")
        old_rv = srv.kubectl_json("get", "cm", "a")["metadata"]["resourceVersion"]
        srv.kubectl("create", "configmap", "b", "--from-literal=a=b")
    finally:
        srv.stop()
    again = start_server(str(tmp_path), datastore="sqlite")
    try:
        u = urlparse(again.url)
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=10,
                                           context=ssl.create_default_context(cafile=again.ca))
        conn.request("GET", f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}",
                     headers={"Authorization": f"Bearer {again.token}"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 410
        assert body["reason"] == "Expired" and body["code"] == 410
        assert body["message"].startswith(f"too old resource version: {old_rv} (")
        # kubectl's informers recover by listing again: wait works across the restart
        cp = again.kubectl("wait", "--for=create", "configmap/b", "--timeout=5s")
        assert cp.returncode == 0
    finally:
        again.stop()
