"""The list of controllers `pocketkube server` runs."""

from __future__ import annotations

from pocketkube.controllers.certificates import CertificateController
from pocketkube.controllers.clusterroleaggregation import ClusterRoleAggregationController
from pocketkube.controllers.endpoints import EndpointsController, KubernetesEndpointsController
from pocketkube.controllers.endpointslice import EndpointSliceController
from pocketkube.controllers.endpointslicemirroring import EndpointSliceMirroringController
from pocketkube.controllers.daemonset import DaemonSetController
from pocketkube.controllers.deployment import DeploymentController
from pocketkube.controllers.disruption import DisruptionController
from pocketkube.controllers.garbagecollector import GarbageCollector
from pocketkube.controllers.cronjob import CronJobController
from pocketkube.controllers.job import JobController, TTLAfterFinishedController
from pocketkube.controllers.loadbalancer import LoadBalancerController
from pocketkube.controllers.namespace import NamespaceController
from pocketkube.controllers.nodelifecycle import NodeLifecycleController
from pocketkube.controllers.replicaset import ReplicaSetController, ReplicationManager
from pocketkube.controllers.resourcequota import ResourceQuotaController
from pocketkube.controllers.rootca import RootCACertPublisher
from pocketkube.controllers.scheduler import Scheduler
from pocketkube.controllers.serviceaccount import ServiceAccountController
from pocketkube.controllers.statefulset import StatefulSetController
from pocketkube.controllers.tainteviction import TaintEvictionController

CONTROLLERS: list = [
    Scheduler,
    DeploymentController,
    ReplicaSetController,
    ReplicationManager,
    EndpointsController,
    EndpointSliceController,
    EndpointSliceMirroringController,
    LoadBalancerController,
    KubernetesEndpointsController,
    StatefulSetController,
    DaemonSetController,
    JobController,
    TTLAfterFinishedController,
    CronJobController,
    GarbageCollector,
    NamespaceController,
    ResourceQuotaController,
    DisruptionController,
    ServiceAccountController,
    RootCACertPublisher,
    ClusterRoleAggregationController,
    CertificateController,
    NodeLifecycleController,
    TaintEvictionController,
]
