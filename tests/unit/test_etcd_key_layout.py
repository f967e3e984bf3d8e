"""apiserver/storage.py's EtcdKeyLayout: our keys <-> kube-apiserver's etcd keys, both ways."""

from __future__ import annotations

import pytest

from pocketkube.apiserver.storage import etcd_key_layout


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("/registry/core/services/default/web", "/registry/services/specs/default/web"),
        ("/registry/core/services/", "/registry/services/specs/"),
        ("/registry/core/endpoints/default/web", "/registry/services/endpoints/default/web"),
        ("/registry/core/nodes/node-1", "/registry/minions/node-1"),
        ("/registry/core/replicationcontrollers/ns/rc", "/registry/controllers/ns/rc"),
        ("/registry/networking.k8s.io/ingresses/ns/web", "/registry/ingress/ns/web"),
        ("/registry/core/pods/default/", "/registry/pods/default/"),
        ("/registry/core/pods/specs/p", "/registry/pods/specs/p"),
        ("/registry/apps/deployments/default/web", "/registry/deployments/default/web"),
        ("/registry/rbac.authorization.k8s.io/clusterroles/admin", "/registry/clusterroles/admin"),
        ("/registry/core/events/default/e.1", "/registry/events/default/e.1"),
        # The extension servers' groups and custom resources keep group/resource, as upstream.
        ("/registry/apiextensions.k8s.io/customresourcedefinitions/crontabs.stable.example.com",
         "/registry/apiextensions.k8s.io/customresourcedefinitions/crontabs.stable.example.com"),
        ("/registry/apiregistration.k8s.io/apiservices/v1.apps", "/registry/apiregistration.k8s.io/apiservices/v1.apps"),
        ("/registry/stable.example.com/crontabs/default/c", "/registry/stable.example.com/crontabs/default/c"),
        ("/registry/", "/registry/"),
        ("", ""),
    ],
)
def test_keys_map_both_ways(ours, theirs):
    layout = etcd_key_layout()
    assert layout.to_etcd(ours) == theirs
    assert layout.from_etcd(theirs) == ours
