"""Decoding Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).

kubectl 1.32's typed clients (`kubectl create deployment|service|secret|configmap|...`) POST
objects as the 4-byte magic `k8s\\0` followed by a `runtime.Unknown` message whose `raw` holds
the protobuf-encoded object. `decode()` turns such a body into the JSON form the API uses, so
the rest of the server only ever sees JSON-shaped dicts.

The schema tables below map each message to its fields: field number -> (JSON name, type,
flags). Field numbers come from the k8s.io/api and apimachinery `generated.proto` files at
v0.32. Types are a scalar (`string`, `bytes`, `bool`, `int32`, `int64`), one of the special
apimachinery types (`Time`, `IntOrString`, `Quantity`, `FieldsV1`), a map, or the name of
another message in `MESSAGES`. Flags: `REP` repeated, `PTR` a Go pointer field (kept even at
its zero value), `INLINE` an embedded struct whose fields JSON shows in the parent.
Unknown field numbers are skipped, as the Go decoder does.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import NamedTuple

from pocketkube.core.errors import APIError, go_quote

PROTOBUF_CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

STRING, BYTES, BOOL, INT32, INT64 = "string", "bytes", "bool", "int32", "int64"
TIME, INTSTR, QUANTITY, FIELDS = "Time", "IntOrString", "Quantity", "FieldsV1"
MAP_STRING, MAP_BYTES, MAP_QUANTITY = "map<string>", "map<bytes>", "map<Quantity>"
RAW = "raw"  # bytes kept as bytes: only runtime.Unknown.raw
REP, PTR, INLINE = 1, 2, 4

_VARINT_TYPES = {BOOL, INT32, INT64}
_MAP_VALUE_TYPES = {MAP_STRING: STRING, MAP_BYTES: BYTES, MAP_QUANTITY: QUANTITY}
_SCALAR_TYPES = _VARINT_TYPES | {STRING, BYTES, RAW, TIME, INTSTR, QUANTITY, FIELDS}

# Go's zero time.Time (0001-01-01T00:00:00Z) in Unix seconds: JSON renders it as null.
_ZERO_TIME_SECONDS = -62135596800
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_SCHEME = "pkg/api/legacyscheme/scheme.go:30"

MESSAGES: dict[str, dict[int, tuple]] = {
    # --- runtime (the envelope) ---
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", RAW),
        3: ("contentEncoding", STRING),
        4: ("contentType", STRING),
    },
    "TypeMeta": {
        1: ("apiVersion", STRING),
        2: ("kind", STRING),
    },
    # --- meta/v1 ---
    "DeleteOptions": {
        1: ("gracePeriodSeconds", INT64, PTR),
        2: ("preconditions", "Preconditions", PTR),
        3: ("orphanDependents", BOOL, PTR),
        4: ("propagationPolicy", STRING, PTR),
        5: ("dryRun", STRING, REP),
    },
    "Preconditions": {
        1: ("uid", STRING, PTR),
        2: ("resourceVersion", STRING, PTR),
    },
    "ObjectMeta": {
        1: ("name", STRING),
        2: ("generateName", STRING),
        3: ("namespace", STRING),
        4: ("selfLink", STRING),
        5: ("uid", STRING),
        6: ("resourceVersion", STRING),
        7: ("generation", INT64),
        8: ("creationTimestamp", TIME),
        9: ("deletionTimestamp", TIME, PTR),
        10: ("deletionGracePeriodSeconds", INT64, PTR),
        11: ("labels", MAP_STRING),
        12: ("annotations", MAP_STRING),
        13: ("ownerReferences", "OwnerReference", REP),
        14: ("finalizers", STRING, REP),
        17: ("managedFields", "ManagedFieldsEntry", REP),
    },
    "OwnerReference": {
        5: ("apiVersion", STRING),
        1: ("kind", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
        6: ("controller", BOOL, PTR),
        7: ("blockOwnerDeletion", BOOL, PTR),
    },
    "ManagedFieldsEntry": {
        1: ("manager", STRING),
        2: ("operation", STRING),
        3: ("apiVersion", STRING),
        4: ("time", TIME, PTR),
        6: ("fieldsType", STRING),
        7: ("fieldsV1", FIELDS, PTR),
        8: ("subresource", STRING),
    },
    "LabelSelector": {
        1: ("matchLabels", MAP_STRING),
        2: ("matchExpressions", "LabelSelectorRequirement", REP),
    },
    "LabelSelectorRequirement": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("values", STRING, REP),
    },
    "Condition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("observedGeneration", INT64),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    # --- apps/v1 ---
    "Deployment": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "DeploymentSpec"),
        3: ("status", "DeploymentStatus"),
    },
    "DeploymentSpec": {
        1: ("replicas", INT32, PTR),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", INT32),
        6: ("revisionHistoryLimit", INT32, PTR),
        7: ("paused", BOOL),
        9: ("progressDeadlineSeconds", INT32, PTR),
    },
    "DeploymentStrategy": {
        1: ("type", STRING),
        2: ("rollingUpdate", "RollingUpdateDeployment"),
    },
    "RollingUpdateDeployment": {
        1: ("maxUnavailable", INTSTR, PTR),
        2: ("maxSurge", INTSTR, PTR),
    },
    "DeploymentStatus": {
        1: ("observedGeneration", INT64),
        2: ("replicas", INT32),
        3: ("updatedReplicas", INT32),
        7: ("readyReplicas", INT32),
        4: ("availableReplicas", INT32),
        5: ("unavailableReplicas", INT32),
        6: ("conditions", "DeploymentCondition", REP),
        8: ("collisionCount", INT32, PTR),
    },
    "DeploymentCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        6: ("lastUpdateTime", TIME),
        7: ("lastTransitionTime", TIME),
        4: ("reason", STRING),
        5: ("message", STRING),
    },
    "ReplicaSet": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "ReplicaSetSpec"),
        3: ("status", "ReplicaSetStatus"),
    },
    "ReplicaSetSpec": {
        1: ("replicas", INT32, PTR),
        4: ("minReadySeconds", INT32),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
    },
    "ReplicaSetStatus": {
        1: ("replicas", INT32),
        2: ("fullyLabeledReplicas", INT32),
        4: ("readyReplicas", INT32),
        5: ("availableReplicas", INT32),
        3: ("observedGeneration", INT64),
        6: ("conditions", "AppsCondition", REP),
    },
    "ReplicationController": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "ReplicationControllerSpec"),
        3: ("status", "ReplicationControllerStatus"),
    },
    "ReplicationControllerSpec": {
        1: ("replicas", INT32, PTR),
        4: ("minReadySeconds", INT32),
        2: ("selector", MAP_STRING),
        3: ("template", "PodTemplateSpec", PTR),
    },
    "ReplicationControllerStatus": {
        1: ("replicas", INT32),
        2: ("fullyLabeledReplicas", INT32),
        4: ("readyReplicas", INT32),
        5: ("availableReplicas", INT32),
        3: ("observedGeneration", INT64),
        6: ("conditions", "AppsCondition", REP),
    },
    # --- autoscaling/v1: the scale subresource (client-go's UpdateScale sends it as protobuf) ---
    "Scale": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "ScaleSpec"),
        3: ("status", "ScaleStatus"),
    },
    "ScaleSpec": {
        1: ("replicas", INT32),
    },
    "ScaleStatus": {
        1: ("replicas", INT32),
        2: ("selector", STRING),
    },
    "ResourceQuota": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "ResourceQuotaSpec"),
        3: ("status", "ResourceQuotaStatus"),
    },
    "ResourceQuotaSpec": {
        1: ("hard", MAP_QUANTITY),
        2: ("scopes", STRING, REP),
        3: ("scopeSelector", "ScopeSelector", PTR),
    },
    "ResourceQuotaStatus": {
        1: ("hard", MAP_QUANTITY),
        2: ("used", MAP_QUANTITY),
    },
    "ScopeSelector": {
        1: ("matchExpressions", "ScopedResourceSelectorRequirement", REP),
    },
    "ScopedResourceSelectorRequirement": {
        1: ("scopeName", STRING),
        2: ("operator", STRING),
        3: ("values", STRING, REP),
    },
    # --- rbac.authorization.k8s.io/v1 ---
    "Role": {
        1: ("metadata", "ObjectMeta"),
        2: ("rules", "PolicyRule", REP),
    },
    "ClusterRole": {
        1: ("metadata", "ObjectMeta"),
        2: ("rules", "PolicyRule", REP),
        3: ("aggregationRule", "AggregationRule", PTR),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta"),
        2: ("subjects", "Subject", REP),
        3: ("roleRef", "RoleRef"),
    },
    "PolicyRule": {
        1: ("verbs", STRING, REP),
        2: ("apiGroups", STRING, REP),
        3: ("resources", STRING, REP),
        4: ("resourceNames", STRING, REP),
        5: ("nonResourceURLs", STRING, REP),
    },
    "AggregationRule": {
        1: ("clusterRoleSelectors", "LabelSelector", REP),
    },
    "Subject": {
        1: ("kind", STRING),
        2: ("apiGroup", STRING),
        3: ("name", STRING),
        4: ("namespace", STRING),
    },
    "RoleRef": {
        1: ("apiGroup", STRING),
        2: ("kind", STRING),
        3: ("name", STRING),
    },
    # --- batch/v1 ---
    "Job": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "JobSpec"),
        3: ("status", "JobStatus"),
    },
    "JobSpec": {
        1: ("parallelism", INT32, PTR),
        2: ("completions", INT32, PTR),
        3: ("activeDeadlineSeconds", INT64, PTR),
        11: ("podFailurePolicy", "PodFailurePolicy", PTR),
        16: ("successPolicy", "SuccessPolicy", PTR),
        7: ("backoffLimit", INT32, PTR),
        12: ("backoffLimitPerIndex", INT32, PTR),
        13: ("maxFailedIndexes", INT32, PTR),
        4: ("selector", "LabelSelector", PTR),
        5: ("manualSelector", BOOL, PTR),
        6: ("template", "PodTemplateSpec"),
        8: ("ttlSecondsAfterFinished", INT32, PTR),
        9: ("completionMode", STRING, PTR),
        10: ("suspend", BOOL, PTR),
        14: ("podReplacementPolicy", STRING, PTR),
        15: ("managedBy", STRING, PTR),
    },
    "JobStatus": {
        1: ("conditions", "JobCondition", REP),
        2: ("startTime", TIME, PTR),
        3: ("completionTime", TIME, PTR),
        4: ("active", INT32),
        5: ("succeeded", INT32),
        6: ("failed", INT32),
        11: ("terminating", INT32, PTR),
        7: ("completedIndexes", STRING),
        10: ("failedIndexes", STRING, PTR),
        8: ("uncountedTerminatedPods", "UncountedTerminatedPods", PTR),
        9: ("ready", INT32, PTR),
    },
    "CronJob": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "CronJobSpec"),
        3: ("status", "CronJobStatus"),
    },
    "CronJobSpec": {
        1: ("schedule", STRING),
        8: ("timeZone", STRING, PTR),
        2: ("startingDeadlineSeconds", INT64, PTR),
        3: ("concurrencyPolicy", STRING),
        4: ("suspend", BOOL, PTR),
        5: ("jobTemplate", "JobTemplateSpec"),
        6: ("successfulJobsHistoryLimit", INT32, PTR),
        7: ("failedJobsHistoryLimit", INT32, PTR),
    },
    "CronJobStatus": {
        1: ("active", "ObjectReference", REP),
        4: ("lastScheduleTime", TIME, PTR),
        5: ("lastSuccessfulTime", TIME, PTR),
    },
    "JobTemplateSpec": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "JobSpec"),
    },
    "JobCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastProbeTime", TIME),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "UncountedTerminatedPods": {
        1: ("succeeded", STRING, REP),
        2: ("failed", STRING, REP),
    },
    "PodFailurePolicy": {
        1: ("rules", "PodFailurePolicyRule", REP),
    },
    "PodFailurePolicyRule": {
        1: ("action", STRING),
        2: ("onExitCodes", "PodFailurePolicyOnExitCodesRequirement", PTR),
        3: ("onPodConditions", "PodFailurePolicyOnPodConditionsPattern", REP),
    },
    "PodFailurePolicyOnExitCodesRequirement": {
        1: ("containerName", STRING, PTR),
        2: ("operator", STRING),
        3: ("values", INT32, REP),
    },
    "PodFailurePolicyOnPodConditionsPattern": {
        1: ("type", STRING),
        2: ("status", STRING),
    },
    "SuccessPolicy": {
        1: ("rules", "SuccessPolicyRule", REP),
    },
    "SuccessPolicyRule": {
        1: ("succeededIndexes", STRING, PTR),
        2: ("succeededCount", INT32, PTR),
    },
    # ReplicaSetCondition, StatefulSetCondition, DaemonSetCondition and core/v1's
    # ReplicationControllerCondition share this layout.
    "AppsCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastTransitionTime", TIME),
        4: ("reason", STRING),
        5: ("message", STRING),
    },
    "StatefulSet": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "StatefulSetSpec"),
        3: ("status", "StatefulSetStatus"),
    },
    "StatefulSetSpec": {
        1: ("replicas", INT32, PTR),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("volumeClaimTemplates", "PersistentVolumeClaim", REP),
        5: ("serviceName", STRING),
        6: ("podManagementPolicy", STRING),
        7: ("updateStrategy", "StatefulSetUpdateStrategy"),
        8: ("revisionHistoryLimit", INT32, PTR),
        9: ("minReadySeconds", INT32),
        10: ("persistentVolumeClaimRetentionPolicy", "StatefulSetPersistentVolumeClaimRetentionPolicy"),
        11: ("ordinals", "StatefulSetOrdinals"),
    },
    "StatefulSetUpdateStrategy": {
        1: ("type", STRING),
        2: ("rollingUpdate", "RollingUpdateStatefulSetStrategy"),
    },
    "RollingUpdateStatefulSetStrategy": {
        1: ("partition", INT32, PTR),
        2: ("maxUnavailable", INTSTR, PTR),
    },
    "StatefulSetPersistentVolumeClaimRetentionPolicy": {
        1: ("whenDeleted", STRING),
        2: ("whenScaled", STRING),
    },
    "StatefulSetOrdinals": {
        1: ("start", INT32),
    },
    "StatefulSetStatus": {
        1: ("observedGeneration", INT64),
        2: ("replicas", INT32),
        3: ("readyReplicas", INT32),
        4: ("currentReplicas", INT32),
        5: ("updatedReplicas", INT32),
        6: ("currentRevision", STRING),
        7: ("updateRevision", STRING),
        9: ("collisionCount", INT32, PTR),
        10: ("conditions", "AppsCondition", REP),
        11: ("availableReplicas", INT32),
    },
    "DaemonSet": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "DaemonSetSpec"),
        3: ("status", "DaemonSetStatus"),
    },
    "DaemonSetSpec": {
        1: ("selector", "LabelSelector"),
        2: ("template", "PodTemplateSpec"),
        3: ("updateStrategy", "DaemonSetUpdateStrategy"),
        4: ("minReadySeconds", INT32),
        6: ("revisionHistoryLimit", INT32, PTR),
    },
    "DaemonSetUpdateStrategy": {
        1: ("type", STRING),
        2: ("rollingUpdate", "RollingUpdateDaemonSet"),
    },
    "RollingUpdateDaemonSet": {
        1: ("maxUnavailable", INTSTR, PTR),
        2: ("maxSurge", INTSTR, PTR),
    },
    "DaemonSetStatus": {
        1: ("currentNumberScheduled", INT32),
        2: ("numberMisscheduled", INT32),
        3: ("desiredNumberScheduled", INT32),
        4: ("numberReady", INT32),
        5: ("observedGeneration", INT64),
        6: ("updatedNumberScheduled", INT32),
        7: ("numberAvailable", INT32),
        8: ("numberUnavailable", INT32),
        9: ("collisionCount", INT32, PTR),
        10: ("conditions", "AppsCondition", REP),
    },
    # --- core/v1: pods ---
    "Pod": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "PodSpec"),
        3: ("status", "PodStatus"),
    },
    "PodTemplateSpec": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "PodSpec"),
    },
    "PodSpec": {
        1: ("volumes", "Volume", REP),
        20: ("initContainers", "Container", REP),
        2: ("containers", "Container", REP),
        3: ("restartPolicy", STRING),
        4: ("terminationGracePeriodSeconds", INT64, PTR),
        5: ("activeDeadlineSeconds", INT64, PTR),
        6: ("dnsPolicy", STRING),
        7: ("nodeSelector", MAP_STRING),
        8: ("serviceAccountName", STRING),
        9: ("serviceAccount", STRING),
        21: ("automountServiceAccountToken", BOOL, PTR),
        10: ("nodeName", STRING),
        11: ("hostNetwork", BOOL),
        12: ("hostPID", BOOL),
        13: ("hostIPC", BOOL),
        27: ("shareProcessNamespace", BOOL, PTR),
        14: ("securityContext", "PodSecurityContext"),
        15: ("imagePullSecrets", "LocalObjectReference", REP),
        16: ("hostname", STRING),
        17: ("subdomain", STRING),
        19: ("schedulerName", STRING),
        22: ("tolerations", "Toleration", REP),
        23: ("hostAliases", "HostAlias", REP),
        24: ("priorityClassName", STRING),
        25: ("priority", INT32, PTR),
        26: ("dnsConfig", "PodDNSConfig"),
        28: ("readinessGates", "PodReadinessGate", REP),
        29: ("runtimeClassName", STRING, PTR),
        30: ("enableServiceLinks", BOOL, PTR),
        31: ("preemptionPolicy", STRING, PTR),
        32: ("overhead", MAP_QUANTITY),
        33: ("topologySpreadConstraints", "TopologySpreadConstraint", REP),
        35: ("setHostnameAsFQDN", BOOL, PTR),
        36: ("os", "PodOS"),
        37: ("hostUsers", BOOL, PTR),
        38: ("schedulingGates", "PodSchedulingGate", REP),
        40: ("resources", "ResourceRequirements"),
    },
    "PodSecurityContext": {
        1: ("seLinuxOptions", "SELinuxOptions"),
        8: ("windowsOptions", "WindowsSecurityContextOptions"),
        2: ("runAsUser", INT64, PTR),
        6: ("runAsGroup", INT64, PTR),
        3: ("runAsNonRoot", BOOL, PTR),
        4: ("supplementalGroups", INT64, REP),
        12: ("supplementalGroupsPolicy", STRING, PTR),
        5: ("fsGroup", INT64, PTR),
        7: ("sysctls", "Sysctl", REP),
        9: ("fsGroupChangePolicy", STRING, PTR),
        10: ("seccompProfile", "SecurityProfile"),
        11: ("appArmorProfile", "SecurityProfile"),
        13: ("seLinuxChangePolicy", STRING, PTR),
    },
    "SecurityContext": {
        1: ("capabilities", "Capabilities"),
        2: ("privileged", BOOL, PTR),
        3: ("seLinuxOptions", "SELinuxOptions"),
        10: ("windowsOptions", "WindowsSecurityContextOptions"),
        4: ("runAsUser", INT64, PTR),
        8: ("runAsGroup", INT64, PTR),
        5: ("runAsNonRoot", BOOL, PTR),
        6: ("readOnlyRootFilesystem", BOOL, PTR),
        7: ("allowPrivilegeEscalation", BOOL, PTR),
        9: ("procMount", STRING, PTR),
        11: ("seccompProfile", "SecurityProfile"),
        12: ("appArmorProfile", "SecurityProfile"),
    },
    "Capabilities": {
        1: ("add", STRING, REP),
        2: ("drop", STRING, REP),
    },
    "SELinuxOptions": {
        1: ("user", STRING),
        2: ("role", STRING),
        3: ("type", STRING),
        4: ("level", STRING),
    },
    "WindowsSecurityContextOptions": {
        1: ("gmsaCredentialSpecName", STRING, PTR),
        2: ("gmsaCredentialSpec", STRING, PTR),
        3: ("runAsUserName", STRING, PTR),
        4: ("hostProcess", BOOL, PTR),
    },
    # SeccompProfile and AppArmorProfile share this layout.
    "SecurityProfile": {
        1: ("type", STRING),
        2: ("localhostProfile", STRING, PTR),
    },
    "Sysctl": {
        1: ("name", STRING),
        2: ("value", STRING),
    },
    "PodOS": {
        1: ("name", STRING),
    },
    "PodSchedulingGate": {
        1: ("name", STRING),
    },
    "PodReadinessGate": {
        1: ("conditionType", STRING),
    },
    "HostAlias": {
        1: ("ip", STRING),
        2: ("hostnames", STRING, REP),
    },
    "PodDNSConfig": {
        1: ("nameservers", STRING, REP),
        2: ("searches", STRING, REP),
        3: ("options", "PodDNSConfigOption", REP),
    },
    "PodDNSConfigOption": {
        1: ("name", STRING),
        2: ("value", STRING, PTR),
    },
    "Toleration": {
        1: ("key", STRING),
        2: ("operator", STRING),
        3: ("value", STRING),
        4: ("effect", STRING),
        5: ("tolerationSeconds", INT64, PTR),
    },
    "TopologySpreadConstraint": {
        1: ("maxSkew", INT32),
        2: ("topologyKey", STRING),
        3: ("whenUnsatisfiable", STRING),
        4: ("labelSelector", "LabelSelector"),
        5: ("minDomains", INT32, PTR),
        6: ("nodeAffinityPolicy", STRING, PTR),
        7: ("nodeTaintsPolicy", STRING, PTR),
        8: ("matchLabelKeys", STRING, REP),
    },
    "Container": {
        1: ("name", STRING),
        2: ("image", STRING),
        3: ("command", STRING, REP),
        4: ("args", STRING, REP),
        5: ("workingDir", STRING),
        6: ("ports", "ContainerPort", REP),
        19: ("envFrom", "EnvFromSource", REP),
        7: ("env", "EnvVar", REP),
        8: ("resources", "ResourceRequirements"),
        23: ("resizePolicy", "ContainerResizePolicy", REP),
        24: ("restartPolicy", STRING, PTR),
        9: ("volumeMounts", "VolumeMount", REP),
        21: ("volumeDevices", "VolumeDevice", REP),
        10: ("livenessProbe", "Probe"),
        11: ("readinessProbe", "Probe"),
        22: ("startupProbe", "Probe"),
        12: ("lifecycle", "Lifecycle"),
        13: ("terminationMessagePath", STRING),
        20: ("terminationMessagePolicy", STRING),
        14: ("imagePullPolicy", STRING),
        15: ("securityContext", "SecurityContext"),
        16: ("stdin", BOOL),
        17: ("stdinOnce", BOOL),
        18: ("tty", BOOL),
    },
    "ContainerPort": {
        1: ("name", STRING),
        2: ("hostPort", INT32),
        3: ("containerPort", INT32),
        4: ("protocol", STRING),
        5: ("hostIP", STRING),
    },
    "ContainerResizePolicy": {
        1: ("resourceName", STRING),
        2: ("restartPolicy", STRING),
    },
    "EnvVar": {
        1: ("name", STRING),
        2: ("value", STRING),
        3: ("valueFrom", "EnvVarSource"),
    },
    "EnvVarSource": {
        1: ("fieldRef", "ObjectFieldSelector"),
        2: ("resourceFieldRef", "ResourceFieldSelector"),
        3: ("configMapKeyRef", "KeySelector"),
        4: ("secretKeyRef", "KeySelector"),
    },
    # ConfigMapKeySelector and SecretKeySelector share this layout.
    "KeySelector": {
        1: ("localObjectReference", "LocalObjectReference", INLINE),
        2: ("key", STRING),
        3: ("optional", BOOL, PTR),
    },
    "ObjectFieldSelector": {
        1: ("apiVersion", STRING),
        2: ("fieldPath", STRING),
    },
    "ResourceFieldSelector": {
        1: ("containerName", STRING),
        2: ("resource", STRING),
        3: ("divisor", QUANTITY),
    },
    "EnvFromSource": {
        1: ("prefix", STRING),
        2: ("configMapRef", "EnvSource"),
        3: ("secretRef", "EnvSource"),
    },
    # ConfigMapEnvSource and SecretEnvSource share this layout.
    "EnvSource": {
        1: ("localObjectReference", "LocalObjectReference", INLINE),
        2: ("optional", BOOL, PTR),
    },
    "LocalObjectReference": {
        1: ("name", STRING),
    },
    "ResourceRequirements": {
        1: ("limits", MAP_QUANTITY),
        2: ("requests", MAP_QUANTITY),
        3: ("claims", "ResourceClaim", REP),
    },
    "ResourceClaim": {
        1: ("name", STRING),
        2: ("request", STRING),
    },
    "VolumeMount": {
        1: ("name", STRING),
        2: ("readOnly", BOOL),
        7: ("recursiveReadOnly", STRING, PTR),
        3: ("mountPath", STRING),
        4: ("subPath", STRING),
        5: ("mountPropagation", STRING, PTR),
        6: ("subPathExpr", STRING),
    },
    "VolumeDevice": {
        1: ("name", STRING),
        2: ("devicePath", STRING),
    },
    "Probe": {
        1: ("handler", "ProbeHandler", INLINE),
        2: ("initialDelaySeconds", INT32),
        3: ("timeoutSeconds", INT32),
        4: ("periodSeconds", INT32),
        5: ("successThreshold", INT32),
        6: ("failureThreshold", INT32),
        7: ("terminationGracePeriodSeconds", INT64, PTR),
    },
    "ProbeHandler": {
        1: ("exec", "ExecAction"),
        2: ("httpGet", "HTTPGetAction"),
        3: ("tcpSocket", "TCPSocketAction"),
        4: ("grpc", "GRPCAction"),
    },
    "Lifecycle": {
        1: ("postStart", "LifecycleHandler"),
        2: ("preStop", "LifecycleHandler"),
    },
    "LifecycleHandler": {
        1: ("exec", "ExecAction"),
        2: ("httpGet", "HTTPGetAction"),
        3: ("tcpSocket", "TCPSocketAction"),
        4: ("sleep", "SleepAction"),
    },
    "ExecAction": {
        1: ("command", STRING, REP),
    },
    "HTTPGetAction": {
        1: ("path", STRING),
        2: ("port", INTSTR),
        3: ("host", STRING),
        4: ("scheme", STRING),
        5: ("httpHeaders", "HTTPHeader", REP),
    },
    "HTTPHeader": {
        1: ("name", STRING),
        2: ("value", STRING),
    },
    "TCPSocketAction": {
        1: ("port", INTSTR),
        2: ("host", STRING),
    },
    "GRPCAction": {
        1: ("port", INT32),
        2: ("service", STRING, PTR),
    },
    "SleepAction": {
        1: ("seconds", INT64),
    },
    # --- core/v1: volumes ---
    "Volume": {
        1: ("name", STRING),
        2: ("volumeSource", "VolumeSource", INLINE),
    },
    "VolumeSource": {
        1: ("hostPath", "HostPathVolumeSource"),
        2: ("emptyDir", "EmptyDirVolumeSource"),
        6: ("secret", "SecretVolumeSource"),
        7: ("nfs", "NFSVolumeSource"),
        10: ("persistentVolumeClaim", "PersistentVolumeClaimVolumeSource"),
        16: ("downwardAPI", "DownwardAPIVolumeSource"),
        19: ("configMap", "ConfigMapVolumeSource"),
        26: ("projected", "ProjectedVolumeSource"),
    },
    "HostPathVolumeSource": {
        1: ("path", STRING),
        2: ("type", STRING, PTR),
    },
    "EmptyDirVolumeSource": {
        1: ("medium", STRING),
        2: ("sizeLimit", QUANTITY, PTR),
    },
    "SecretVolumeSource": {
        1: ("secretName", STRING),
        2: ("items", "KeyToPath", REP),
        3: ("defaultMode", INT32, PTR),
        4: ("optional", BOOL, PTR),
    },
    "ConfigMapVolumeSource": {
        1: ("localObjectReference", "LocalObjectReference", INLINE),
        2: ("items", "KeyToPath", REP),
        3: ("defaultMode", INT32, PTR),
        4: ("optional", BOOL, PTR),
    },
    "KeyToPath": {
        1: ("key", STRING),
        2: ("path", STRING),
        3: ("mode", INT32, PTR),
    },
    "NFSVolumeSource": {
        1: ("server", STRING),
        2: ("path", STRING),
        3: ("readOnly", BOOL),
    },
    "PersistentVolumeClaimVolumeSource": {
        1: ("claimName", STRING),
        2: ("readOnly", BOOL),
    },
    "DownwardAPIVolumeSource": {
        1: ("items", "DownwardAPIVolumeFile", REP),
        2: ("defaultMode", INT32, PTR),
    },
    "DownwardAPIVolumeFile": {
        1: ("path", STRING),
        2: ("fieldRef", "ObjectFieldSelector"),
        3: ("resourceFieldRef", "ResourceFieldSelector"),
        4: ("mode", INT32, PTR),
    },
    "ProjectedVolumeSource": {
        1: ("sources", "VolumeProjection", REP),
        2: ("defaultMode", INT32, PTR),
    },
    "VolumeProjection": {
        1: ("secret", "ObjectProjection"),
        2: ("downwardAPI", "DownwardAPIProjection"),
        3: ("configMap", "ObjectProjection"),
        4: ("serviceAccountToken", "ServiceAccountTokenProjection"),
    },
    # SecretProjection and ConfigMapProjection share this layout.
    "ObjectProjection": {
        1: ("localObjectReference", "LocalObjectReference", INLINE),
        2: ("items", "KeyToPath", REP),
        4: ("optional", BOOL, PTR),
    },
    "DownwardAPIProjection": {
        1: ("items", "DownwardAPIVolumeFile", REP),
    },
    "ServiceAccountTokenProjection": {
        1: ("audience", STRING),
        2: ("expirationSeconds", INT64, PTR),
        3: ("path", STRING),
    },
    "PersistentVolumeClaim": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "PersistentVolumeClaimSpec"),
    },
    "PersistentVolumeClaimSpec": {
        1: ("accessModes", STRING, REP),
        4: ("selector", "LabelSelector"),
        2: ("resources", "VolumeResourceRequirements"),
        3: ("volumeName", STRING),
        5: ("storageClassName", STRING, PTR),
        6: ("volumeMode", STRING, PTR),
        7: ("dataSource", "TypedLocalObjectReference"),
        9: ("volumeAttributesClassName", STRING, PTR),
    },
    "VolumeResourceRequirements": {
        1: ("limits", MAP_QUANTITY),
        2: ("requests", MAP_QUANTITY),
    },
    "TypedLocalObjectReference": {
        1: ("apiGroup", STRING, PTR),
        2: ("kind", STRING),
        3: ("name", STRING),
    },
    # --- core/v1: pod status ---
    "PodStatus": {
        1: ("phase", STRING),
        2: ("conditions", "PodCondition", REP),
        3: ("message", STRING),
        4: ("reason", STRING),
        11: ("nominatedNodeName", STRING),
        5: ("hostIP", STRING),
        16: ("hostIPs", "IPAddress", REP),
        6: ("podIP", STRING),
        12: ("podIPs", "IPAddress", REP),
        7: ("startTime", TIME, PTR),
        10: ("initContainerStatuses", "ContainerStatus", REP),
        8: ("containerStatuses", "ContainerStatus", REP),
        9: ("qosClass", STRING),
        13: ("ephemeralContainerStatuses", "ContainerStatus", REP),
        14: ("resize", STRING),
    },
    # PodIP and HostIP share this layout.
    "IPAddress": {
        1: ("ip", STRING),
    },
    "PodCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastProbeTime", TIME),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "ContainerStatus": {
        1: ("name", STRING),
        2: ("state", "ContainerState"),
        3: ("lastState", "ContainerState"),
        4: ("ready", BOOL),
        5: ("restartCount", INT32),
        6: ("image", STRING),
        7: ("imageID", STRING),
        8: ("containerID", STRING),
        9: ("started", BOOL, PTR),
        10: ("allocatedResources", MAP_QUANTITY),
        11: ("resources", "ResourceRequirements"),
    },
    "ContainerState": {
        1: ("waiting", "ContainerStateWaiting"),
        2: ("running", "ContainerStateRunning"),
        3: ("terminated", "ContainerStateTerminated"),
    },
    "ContainerStateWaiting": {
        1: ("reason", STRING),
        2: ("message", STRING),
    },
    "ContainerStateRunning": {
        1: ("startedAt", TIME),
    },
    "ContainerStateTerminated": {
        1: ("exitCode", INT32),
        2: ("signal", INT32),
        3: ("reason", STRING),
        4: ("message", STRING),
        5: ("startedAt", TIME),
        6: ("finishedAt", TIME),
        7: ("containerID", STRING),
    },
    # --- core/v1: services and endpoints ---
    "Service": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "ServiceSpec"),
        3: ("status", "ServiceStatus"),
    },
    "ServiceSpec": {
        1: ("ports", "ServicePort", REP),
        2: ("selector", MAP_STRING),
        3: ("clusterIP", STRING),
        18: ("clusterIPs", STRING, REP),
        4: ("type", STRING),
        5: ("externalIPs", STRING, REP),
        7: ("sessionAffinity", STRING),
        8: ("loadBalancerIP", STRING),
        9: ("loadBalancerSourceRanges", STRING, REP),
        10: ("externalName", STRING),
        11: ("externalTrafficPolicy", STRING),
        12: ("healthCheckNodePort", INT32),
        13: ("publishNotReadyAddresses", BOOL),
        14: ("sessionAffinityConfig", "SessionAffinityConfig"),
        19: ("ipFamilies", STRING, REP),
        17: ("ipFamilyPolicy", STRING, PTR),
        20: ("allocateLoadBalancerNodePorts", BOOL, PTR),
        21: ("loadBalancerClass", STRING, PTR),
        22: ("internalTrafficPolicy", STRING, PTR),
        23: ("trafficDistribution", STRING, PTR),
    },
    "ServicePort": {
        1: ("name", STRING),
        2: ("protocol", STRING),
        6: ("appProtocol", STRING, PTR),
        3: ("port", INT32),
        4: ("targetPort", INTSTR),
        5: ("nodePort", INT32),
    },
    "SessionAffinityConfig": {
        1: ("clientIP", "ClientIPConfig"),
    },
    "ClientIPConfig": {
        1: ("timeoutSeconds", INT32, PTR),
    },
    "ServiceStatus": {
        1: ("loadBalancer", "LoadBalancerStatus"),
        2: ("conditions", "Condition", REP),
    },
    "LoadBalancerStatus": {
        1: ("ingress", "LoadBalancerIngress", REP),
    },
    "LoadBalancerIngress": {
        1: ("ip", STRING),
        2: ("hostname", STRING),
        3: ("ipMode", STRING, PTR),
        4: ("ports", "PortStatus", REP),
    },
    # core/v1 PortStatus and networking/v1 IngressPortStatus share this layout.
    "PortStatus": {
        1: ("port", INT32),
        2: ("protocol", STRING),
        3: ("error", STRING, PTR),
    },
    "Endpoints": {
        1: ("metadata", "ObjectMeta"),
        2: ("subsets", "EndpointSubset", REP),
    },
    "EndpointSubset": {
        1: ("addresses", "EndpointAddress", REP),
        2: ("notReadyAddresses", "EndpointAddress", REP),
        3: ("ports", "EndpointPort", REP),
    },
    "EndpointAddress": {
        1: ("ip", STRING),
        3: ("hostname", STRING),
        4: ("nodeName", STRING, PTR),
        2: ("targetRef", "ObjectReference"),
    },
    "EndpointPort": {
        1: ("name", STRING),
        2: ("port", INT32),
        3: ("protocol", STRING),
        4: ("appProtocol", STRING, PTR),
    },
    "ObjectReference": {
        1: ("kind", STRING),
        2: ("namespace", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
        5: ("apiVersion", STRING),
        6: ("resourceVersion", STRING),
        7: ("fieldPath", STRING),
    },
    # --- core/v1: config and identity ---
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        5: ("immutable", BOOL, PTR),
        2: ("data", MAP_BYTES),
        4: ("stringData", MAP_STRING),
        3: ("type", STRING),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        4: ("immutable", BOOL, PTR),
        2: ("data", MAP_STRING),
        3: ("binaryData", MAP_BYTES),
    },
    "Namespace": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "NamespaceSpec"),
        3: ("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {
        1: ("finalizers", STRING, REP),
    },
    "NamespaceStatus": {
        1: ("phase", STRING),
        2: ("conditions", "NamespaceCondition", REP),
    },
    "NamespaceCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta"),
        2: ("secrets", "ObjectReference", REP),
        3: ("imagePullSecrets", "LocalObjectReference", REP),
        4: ("automountServiceAccountToken", BOOL, PTR),
    },
    # --- core/v1: nodes ---
    "Node": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "NodeSpec"),
        3: ("status", "NodeStatus"),
    },
    "NodeSpec": {
        1: ("podCIDR", STRING),
        7: ("podCIDRs", STRING, REP),
        3: ("providerID", STRING),
        4: ("unschedulable", BOOL),
        5: ("taints", "Taint", REP),
        2: ("externalID", STRING),
    },
    "Taint": {
        1: ("key", STRING),
        2: ("value", STRING),
        3: ("effect", STRING),
        4: ("timeAdded", TIME, PTR),
    },
    "NodeStatus": {
        1: ("capacity", MAP_QUANTITY),
        2: ("allocatable", MAP_QUANTITY),
        3: ("phase", STRING),
        4: ("conditions", "NodeCondition", REP),
        5: ("addresses", "NodeAddress", REP),
        6: ("daemonEndpoints", "NodeDaemonEndpoints"),
        7: ("nodeInfo", "NodeSystemInfo"),
        8: ("images", "ContainerImage", REP),
        9: ("volumesInUse", STRING, REP),
        10: ("volumesAttached", "AttachedVolume", REP),
    },
    "NodeCondition": {
        1: ("type", STRING),
        2: ("status", STRING),
        3: ("lastHeartbeatTime", TIME),
        4: ("lastTransitionTime", TIME),
        5: ("reason", STRING),
        6: ("message", STRING),
    },
    "NodeAddress": {
        1: ("type", STRING),
        2: ("address", STRING),
    },
    "NodeDaemonEndpoints": {
        1: ("kubeletEndpoint", "DaemonEndpoint"),
    },
    "DaemonEndpoint": {
        1: ("Port", INT32),
    },
    "NodeSystemInfo": {
        1: ("machineID", STRING),
        2: ("systemUUID", STRING),
        3: ("bootID", STRING),
        4: ("kernelVersion", STRING),
        5: ("osImage", STRING),
        6: ("containerRuntimeVersion", STRING),
        7: ("kubeletVersion", STRING),
        8: ("kubeProxyVersion", STRING),
        9: ("operatingSystem", STRING),
        10: ("architecture", STRING),
    },
    "ContainerImage": {
        1: ("names", STRING, REP),
        2: ("sizeBytes", INT64),
    },
    "AttachedVolume": {
        1: ("name", STRING),
        2: ("devicePath", STRING),
    },
    # --- networking.k8s.io/v1 ---
    "Ingress": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "IngressSpec"),
        3: ("status", "IngressStatus"),
    },
    "IngressSpec": {
        4: ("ingressClassName", STRING, PTR),
        1: ("defaultBackend", "IngressBackend"),
        2: ("tls", "IngressTLS", REP),
        3: ("rules", "IngressRule", REP),
    },
    "IngressBackend": {
        4: ("service", "IngressServiceBackend"),
        3: ("resource", "TypedLocalObjectReference"),
    },
    "IngressServiceBackend": {
        1: ("name", STRING),
        2: ("port", "ServiceBackendPort"),
    },
    "ServiceBackendPort": {
        1: ("name", STRING),
        2: ("number", INT32),
    },
    "IngressTLS": {
        1: ("hosts", STRING, REP),
        2: ("secretName", STRING),
    },
    "IngressRule": {
        1: ("host", STRING),
        2: ("ingressRuleValue", "IngressRuleValue", INLINE),
    },
    "IngressRuleValue": {
        1: ("http", "HTTPIngressRuleValue"),
    },
    "HTTPIngressRuleValue": {
        1: ("paths", "HTTPIngressPath", REP),
    },
    "HTTPIngressPath": {
        1: ("path", STRING),
        3: ("pathType", STRING, PTR),
        2: ("backend", "IngressBackend"),
    },
    "IngressStatus": {
        1: ("loadBalancer", "IngressLoadBalancerStatus"),
    },
    "IngressLoadBalancerStatus": {
        1: ("ingress", "IngressLoadBalancerIngress", REP),
    },
    "IngressLoadBalancerIngress": {
        1: ("ip", STRING),
        2: ("hostname", STRING),
        4: ("ports", "PortStatus", REP),
    },
    "IngressClass": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "IngressClassSpec"),
    },
    "IngressClassSpec": {
        1: ("controller", STRING),
        2: ("parameters", "IngressClassParametersReference"),
    },
    "IngressClassParametersReference": {
        1: ("apiGroup", STRING, PTR),
        2: ("kind", STRING),
        3: ("name", STRING),
        4: ("scope", STRING, PTR),
        5: ("namespace", STRING, PTR),
    },
    # --- discovery.k8s.io/v1 ---
    "EndpointSlice": {
        1: ("metadata", "ObjectMeta"),
        4: ("addressType", STRING),
        2: ("endpoints", "discovery.Endpoint", REP),
        3: ("ports", "discovery.EndpointPort", REP),
    },
    "discovery.Endpoint": {
        1: ("addresses", STRING, REP),
        2: ("conditions", "discovery.EndpointConditions"),
        3: ("hostname", STRING, PTR),
        4: ("targetRef", "ObjectReference"),
        5: ("deprecatedTopology", MAP_STRING),
        6: ("nodeName", STRING, PTR),
        7: ("zone", STRING, PTR),
        8: ("hints", "discovery.EndpointHints"),
    },
    "discovery.EndpointConditions": {
        1: ("ready", BOOL, PTR),
        2: ("serving", BOOL, PTR),
        3: ("terminating", BOOL, PTR),
    },
    "discovery.EndpointHints": {
        1: ("forZones", "discovery.ForZone", REP),
    },
    "discovery.ForZone": {
        1: ("name", STRING),
    },
    "discovery.EndpointPort": {
        1: ("name", STRING, PTR),
        2: ("protocol", STRING, PTR),
        3: ("port", INT32, PTR),
        4: ("appProtocol", STRING, PTR),
    },
    # --- apimachinery special types (decoded by hand, listed for their field numbers) ---
    "Time": {1: ("seconds", INT64), 2: ("nanos", INT32)},
    "IntOrString": {1: ("type", INT64), 2: ("intVal", INT32), 3: ("strVal", STRING)},
    "Quantity": {1: ("string", STRING)},
    "FieldsV1": {1: ("Raw", RAW)},
    # --- authentication.k8s.io/v1: `kubectl create token` ---
    "TokenRequest": {
        1: ("metadata", "ObjectMeta"),
        2: ("spec", "TokenRequestSpec"),
        3: ("status", "TokenRequestStatus"),
    },
    "TokenRequestSpec": {
        1: ("audiences", STRING, REP),
        4: ("expirationSeconds", INT64, PTR),
        3: ("boundObjectRef", "BoundObjectReference", PTR),
    },
    "BoundObjectReference": {
        1: ("kind", STRING),
        2: ("apiVersion", STRING),
        3: ("name", STRING),
        4: ("uid", STRING),
    },
    "TokenRequestStatus": {
        1: ("token", STRING),
        2: ("expirationTimestamp", TIME),
    },
    # --- policy/v1, scheduling.k8s.io/v1, autoscaling/v1: `kubectl create pdb | priorityclass`, `autoscale` ---
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodDisruptionBudgetSpec")},
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions", PTR)},
    "PodDisruptionBudgetSpec": {1: ("minAvailable", INTSTR, PTR), 2: ("selector", "LabelSelector", PTR),
                                3: ("maxUnavailable", INTSTR, PTR), 4: ("unhealthyPodEvictionPolicy", STRING, PTR)},
    "PriorityClass": {1: ("metadata", "ObjectMeta"), 2: ("value", INT32), 3: ("globalDefault", BOOL),
                      4: ("description", STRING), 5: ("preemptionPolicy", STRING, PTR)},
    "HorizontalPodAutoscalerV1": {1: ("metadata", "ObjectMeta"), 2: ("spec", "HorizontalPodAutoscalerSpecV1")},
    "HorizontalPodAutoscalerSpecV1": {1: ("scaleTargetRef", "CrossVersionObjectReference"),
                                      2: ("minReplicas", INT32, PTR), 3: ("maxReplicas", INT32),
                                      4: ("targetCPUUtilizationPercentage", INT32, PTR)},
    "CrossVersionObjectReference": {1: ("kind", STRING), 2: ("name", STRING), 3: ("apiVersion", STRING)},
    # --- certificates.k8s.io/v1: `kubectl certificate approve|deny` (PUT .../approval) ---
    # (spec.extra, field 6, a map of ExtraValue, is skipped: /approval keeps the stored spec)
    "CertificateSigningRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CertificateSigningRequestSpec"),
                                  3: ("status", "CertificateSigningRequestStatus")},
    "CertificateSigningRequestSpec": {1: ("request", BYTES), 2: ("username", STRING), 3: ("uid", STRING),
                                      4: ("groups", STRING, REP), 5: ("usages", STRING, REP),
                                      7: ("signerName", STRING), 8: ("expirationSeconds", INT32, PTR)},
    "CertificateSigningRequestStatus": {1: ("conditions", "CertificateSigningRequestCondition", REP),
                                        2: ("certificate", BYTES)},
    "CertificateSigningRequestCondition": {1: ("type", STRING), 2: ("reason", STRING), 3: ("message", STRING),
                                           4: ("lastUpdateTime", TIME), 5: ("lastTransitionTime", TIME),
                                           6: ("status", STRING)},
    # --- authentication.k8s.io/v1 and authorization.k8s.io/v1: `kubectl auth whoami | can-i` ---
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta"), 2: ("status", "SelfSubjectReviewStatus")},
    "SelfSubjectReviewStatus": {1: ("userInfo", "UserInfo")},
    "UserInfo": {1: ("username", STRING), 2: ("uid", STRING), 3: ("groups", STRING, REP)},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec"), 3: ("status", "TokenReviewStatus")},
    "TokenReviewSpec": {1: ("token", STRING), 2: ("audiences", STRING, REP)},
    "TokenReviewStatus": {1: ("authenticated", BOOL), 2: ("user", "UserInfo"), 4: ("audiences", STRING, REP),
                          3: ("error", STRING)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec"),
                                3: ("status", "SubjectAccessReviewStatus")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", PTR),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", PTR)},
    "ResourceAttributes": {1: ("namespace", STRING), 2: ("verb", STRING), 3: ("group", STRING),
                           4: ("version", STRING), 5: ("resource", STRING), 6: ("subresource", STRING),
                           7: ("name", STRING)},
    "NonResourceAttributes": {1: ("path", STRING), 2: ("verb", STRING)},
    "SubjectAccessReviewStatus": {1: ("allowed", BOOL), 4: ("denied", BOOL), 2: ("reason", STRING),
                                  3: ("evaluationError", STRING)},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec"),
                            3: ("status", "SubjectAccessReviewStatus")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", PTR),
                                2: ("nonResourceAttributes", "NonResourceAttributes", PTR), 3: ("user", STRING),
                                4: ("groups", STRING, REP), 6: ("uid", STRING)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec"),
                               3: ("status", "SubjectRulesReviewStatus")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", STRING)},
    "SubjectRulesReviewStatus": {1: ("resourceRules", "ResourceRule", REP),
                                 2: ("nonResourceRules", "NonResourceRule", REP), 3: ("incomplete", BOOL),
                                 4: ("evaluationError", STRING)},
    "ResourceRule": {1: ("verbs", STRING, REP), 2: ("apiGroups", STRING, REP), 3: ("resources", STRING, REP),
                     4: ("resourceNames", STRING, REP)},
    "NonResourceRule": {1: ("verbs", STRING, REP), 2: ("nonResourceURLs", STRING, REP)},
}

# (apiVersion, kind) -> top-level message
KINDS: dict[tuple[str, str], str] = {
    ("apps/v1", "Deployment"): "Deployment",
    ("apps/v1", "ReplicaSet"): "ReplicaSet",
    ("apps/v1", "StatefulSet"): "StatefulSet",
    ("apps/v1", "DaemonSet"): "DaemonSet",
    ("v1", "Pod"): "Pod",
    ("v1", "Service"): "Service",
    ("v1", "Secret"): "Secret",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Namespace"): "Namespace",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Endpoints"): "Endpoints",
    ("v1", "Node"): "Node",
    ("v1", "ReplicationController"): "ReplicationController",
    ("v1", "ResourceQuota"): "ResourceQuota",
    ("autoscaling/v1", "Scale"): "Scale",
    ("batch/v1", "Job"): "Job",
    ("batch/v1", "CronJob"): "CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",  # the same fields
    ("networking.k8s.io/v1", "Ingress"): "Ingress",
    ("networking.k8s.io/v1", "IngressClass"): "IngressClass",
    ("discovery.k8s.io/v1", "EndpointSlice"): "EndpointSlice",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("policy/v1", "PodDisruptionBudget"): "PodDisruptionBudget",
    ("policy/v1", "Eviction"): "Eviction",
    ("scheduling.k8s.io/v1", "PriorityClass"): "PriorityClass",
    ("autoscaling/v1", "HorizontalPodAutoscaler"): "HorizontalPodAutoscalerV1",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): "CertificateSigningRequest",
    ("authentication.k8s.io/v1", "TokenReview"): "TokenReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "SubjectAccessReview",  # the same fields
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
}
# meta/v1 option kinds: registered in every group version (metav1.AddToGroupVersion), so client-go's
# DELETE body says `apiVersion: v1` or `apps/v1` beside `kind: DeleteOptions`.
OPTIONS_KINDS = {"DeleteOptions": "DeleteOptions"}
# Internal API package of a group, as conversion errors name it ("converting (v1.Service) to (apps.Deployment)").
_INTERNAL_PACKAGE = {"": "core", "apps": "apps", "autoscaling": "autoscaling", "batch": "batch", "rbac.authorization.k8s.io": "rbac", "networking.k8s.io": "networking", "discovery.k8s.io": "discovery",
                     "authentication.k8s.io": "authentication", "authorization.k8s.io": "authorization",
                     "policy": "policy", "scheduling.k8s.io": "scheduling"}


class Field(NamedTuple):
    json: str
    type: str
    flags: int = 0

    @property
    def repeated(self) -> bool:
        return bool(self.flags & REP)

    @property
    def pointer(self) -> bool:
        return bool(self.flags & PTR)

    @property
    def inline(self) -> bool:
        return bool(self.flags & INLINE)

    @property
    def go_name(self) -> str:
        """The Go field name as the generated code's wireType errors print it (approximately)."""
        return self.type if self.inline else self.json[:1].upper() + self.json[1:]


SCHEMA: dict[str, dict[int, Field]] = {
    message: {number: Field(*spec) for number, spec in fields.items()} for message, fields in MESSAGES.items()
}


class _DecodeError(Exception):
    """A decoding failure, worded as the Go protobuf/apimachinery code words it."""


# ---- wire format ----

def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned 64-bit varint at pos (at most 10 bytes, as Go's generated code reads it)."""
    value = shift = 0
    while True:
        if shift >= 64:
            raise _DecodeError("proto: integer overflow")
        if pos >= len(data):
            raise _DecodeError("unexpected EOF")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A length prefix: returns (start, end) of the payload."""
    length, pos = _read_varint(data, pos)
    if length >= 1 << 63:
        raise _DecodeError("proto: negative length found during unmarshaling")
    end = pos + length
    if end > len(data):
        raise _DecodeError("unexpected EOF")
    return pos, end


def _skip(data: bytes, pos: int) -> int:
    """Skip one field (including whole groups) starting at its key; returns the next position."""
    depth = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            pos = _read_length(data, pos)[1]
        elif wire == 3:
            depth += 1
        elif wire == 4:
            if depth == 0:
                raise _DecodeError("proto: unexpected end of group")
            depth -= 1
        elif wire == 5:
            pos += 4
        else:
            raise _DecodeError(f"proto: illegal wireType {wire}")
        if depth == 0:
            if pos > len(data):
                raise _DecodeError("unexpected EOF")
            return pos
    raise _DecodeError("unexpected EOF")


def _walk(data: bytes, name: str, schema: dict[int, Field], handle) -> None:
    """Call handle(pos, wire, field) for each known field (it returns the next position)."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _read_varint(data, pos)
        number, wire = _signed(key >> 3, 32), key & 7
        if wire == 4:
            raise _DecodeError(f"proto: {name}: wiretype end group for non-group")
        if number <= 0:
            raise _DecodeError(f"proto: {name}: illegal tag {number} (wire type {wire})")
        field = schema.get(number)
        pos = _skip(data, start) if field is None else handle(pos, wire, field)


def _scalar(data: bytes, pos: int, wire: int, field: Field) -> tuple[object, int]:
    """Read one value of a non-message field; returns (JSON value or None for absent, next pos)."""
    expected_wire = 0 if field.type in _VARINT_TYPES else 2
    if wire != expected_wire:
        raise _DecodeError(f"proto: wrong wireType = {wire} for field {field.go_name}")
    if expected_wire == 0:
        raw, pos = _read_varint(data, pos)
        return _varint_value(raw, field.type), pos
    start, end = _read_length(data, pos)
    return _length_value(data[start:end], field.type), end


def _varint_value(raw: int, kind: str) -> object:
    if kind == BOOL:
        return raw != 0
    return _signed(raw, 32 if kind == INT32 else 64)


def _length_value(payload: bytes, kind: str) -> object:
    return _LENGTH_DECODERS[kind](payload)


# ---- apimachinery special types ----

def _plain_message(payload: bytes, message: str, schema: dict[int, Field] | None = None) -> dict:
    """Decode a flat message of scalars by JSON name, keeping zero values."""
    values: dict = {}

    def store(pos: int, wire: int, field: Field) -> int:
        values[field.json], pos = _scalar(payload, pos, wire, field)
        return pos

    _walk(payload, message, schema or SCHEMA[message], store)
    return values


def _time(payload: bytes) -> str | None:
    """metav1.Time: {1: seconds}; nanos are ignored. Empty (the zero time) -> None."""
    if not payload:
        return None
    seconds = _plain_message(payload, "Time").get("seconds", 0)
    if seconds == _ZERO_TIME_SECONDS:
        return None
    try:
        moment = _EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise _DecodeError("Time.MarshalJSON: year outside of range [0,9999]") from None
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def _int_or_string(payload: bytes) -> int | str:
    values = _plain_message(payload, "IntOrString")
    kind = values.get("type", 0)
    if kind == 0:
        return values.get("intVal", 0)
    if kind == 1:
        return values.get("strVal", "")
    raise _DecodeError("impossible IntOrString.Type")


def _quantity(payload: bytes) -> str:
    return _plain_message(payload, "Quantity").get("string") or "0"


def _fields_v1(payload: bytes) -> object:
    raw = _plain_message(payload, "FieldsV1").get("Raw", b"")
    try:
        return json.loads(raw) if raw else None
    except (ValueError, RecursionError) as err:
        raise _DecodeError(f"FieldsV1 is not valid JSON: {err}") from None


_LENGTH_DECODERS = {
    STRING: lambda payload: payload.decode("utf-8", errors="replace"),  # Go's JSON replaces bad UTF-8 too
    BYTES: lambda payload: base64.b64encode(payload).decode("ascii"),
    RAW: bytes,
    TIME: _time,
    INTSTR: _int_or_string,
    QUANTITY: _quantity,
    FIELDS: _fields_v1,
}


# ---- messages ----

def _map_entry(payload: bytes, value_type: str) -> tuple[str, object]:
    """A map entry {1: key, 2: value}; a missing value is the type's zero value."""
    entry = _plain_message(payload, "MapEntry", {1: Field("key", STRING), 2: Field("value", value_type)})
    return entry.get("key", ""), entry.get("value", "0" if value_type == QUANTITY else "")


def _packed(payload: bytes, field: Field) -> list:
    values, pos = [], 0
    while pos < len(payload):
        raw, pos = _read_varint(payload, pos)
        values.append(_varint_value(raw, field.type))
    return values


def _decode_into(data: bytes, message: str, out: dict) -> dict:
    """Decode a message into `out` (merging, as Go's Unmarshal does when a field repeats)."""
    _walk(data, message, SCHEMA[message], lambda pos, wire, field: _decode_field(data, pos, wire, field, out))
    return out


def _decode_field(data: bytes, pos: int, wire: int, field: Field, out: dict) -> int:
    if field.type in _MAP_VALUE_TYPES:
        payload, pos = _length_delimited(data, pos, wire, field)
        key, value = _map_entry(payload, _MAP_VALUE_TYPES[field.type])
        out.setdefault(field.json, {})[key] = value
    elif field.type not in _SCALAR_TYPES:
        payload, pos = _length_delimited(data, pos, wire, field)
        if field.repeated:
            out.setdefault(field.json, []).append(_decode_into(payload, field.type, {}))
        elif field.inline:
            _decode_into(payload, field.type, out)
        else:
            _decode_into(payload, field.type, out.setdefault(field.json, {}))
    elif field.repeated and field.type in _VARINT_TYPES and wire == 2:
        payload, pos = _length_delimited(data, pos, wire, field)
        out.setdefault(field.json, []).extend(_packed(payload, field))
    else:
        value, pos = _scalar(data, pos, wire, field)
        _assign(out, field, value)
    return pos


def _length_delimited(data: bytes, pos: int, wire: int, field: Field) -> tuple[bytes, int]:
    if wire != 2:
        raise _DecodeError(f"proto: wrong wireType = {wire} for field {field.go_name}")
    start, end = _read_length(data, pos)
    return data[start:end], end


def _assign(out: dict, field: Field, value: object) -> None:
    """Set a scalar as JSON shows it: zero non-pointer values and null times are omitted."""
    if field.repeated:
        out.setdefault(field.json, []).append(value)
    elif value is None or (not field.pointer and value in (0, "", False)):
        out.pop(field.json, None)
    else:
        out[field.json] = value


# ---- envelope ----

def _split_api_version(api_version: str) -> tuple[str, str]:
    """schema.ParseGroupVersion, leniently: "apps/v1" -> ("apps", "v1"), "v1" -> ("", "v1")."""
    parts = api_version.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def _join_api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _summarize(body: bytes, max_length: int = 30) -> str:
    """apiserver's summarizeData: the start of the body, as text if JSON-looking, else hex."""
    if not body:
        return "<empty>"
    if body[:1] == b"{":
        text = body[:max_length].decode("utf-8", errors="replace")
        return text + " ..." if len(body) > max_length else text
    return body[:max_length].hex() + (" ..." if len(body) > max_length else "")


def _unwrap_envelope(body: bytes) -> tuple[str, str, bytes]:
    """Check the magic and parse runtime.Unknown: returns (apiVersion, kind, raw)."""
    if not body:
        raise _DecodeError("empty data")
    if not body.startswith(MAGIC):
        raise _DecodeError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
    if len(body) == len(MAGIC):
        raise _DecodeError("empty body")
    unknown = _decode_into(body[len(MAGIC):], "Unknown", {})
    type_meta = unknown.get("typeMeta", {})
    return type_meta.get("apiVersion", ""), type_meta.get("kind", ""), unknown.get("raw", b"")


def decode(body: bytes, expected: tuple[str, str] | None = None) -> dict:
    """Decode a `k8s\\0` + runtime.Unknown body into the object's JSON form.

    `expected` is the (apiVersion, kind) the request URL names, e.g. ("apps/v1", "Deployment").
    With it, an empty apiVersion/kind in the envelope is defaulted from it, a body of another
    kind is refused, and error messages are worded as the apiserver's create/update handlers
    word them. Raises APIError 400 BadRequest for anything undecodable.
    """
    expected_kind = expected[1] if expected else ""
    try:
        api_version, kind, raw = _unwrap_envelope(body)
    except _DecodeError as err:
        raise _bad_request(err, expected_kind, None, body) from None
    group, version = _split_api_version(api_version)
    if expected:
        expected_group, expected_version = _split_api_version(expected[0])
        kind = kind or expected_kind
        if not version and expected_version:
            group, version = expected_group, expected_version
    try:
        message = _message_for(api_version, kind, group, version)
        obj = {"apiVersion": _join_api_version(group, version), "kind": kind}
        _decode_into(raw, message, obj)
        options = kind in OPTIONS_KINDS and kind == expected_kind  # any group version will do
        if expected and not options and (group, kind) != (expected_group, expected_kind):
            raise _DecodeError(f"converting ({version}.{kind}) to "
                              f"({_INTERNAL_PACKAGE.get(expected_group, expected_group)}.{expected_kind}): "
                              "unknown conversion")
    except _DecodeError as err:
        raise _bad_request(err, expected_kind, (version, kind), body) from None
    return obj


def _message_for(api_version: str, kind: str, group: str, version: str) -> str:
    type_meta = f"runtime.TypeMeta{{APIVersion:{go_quote(api_version)}, Kind:{go_quote(kind)}}}"
    if not kind:
        raise _DecodeError(f"Object 'Kind' is missing in '{type_meta}'")
    if not version:
        raise _DecodeError(f"Object 'apiVersion' is missing in '{type_meta}'")
    group_version = _join_api_version(group, version)
    message = KINDS.get((group_version, kind)) or OPTIONS_KINDS.get(kind)
    if message is None:
        raise _DecodeError(f"no kind {go_quote(kind)} is registered for version {go_quote(group_version)} "
                          f"in scheme {go_quote(_SCHEME)}")
    return message


def _bad_request(err: _DecodeError, expected_kind: str, version_kind: tuple[str, str] | None,
                 body: bytes) -> APIError:
    """Word the error as transformDecodeError does when the handler knows the target kind."""
    if not expected_kind:
        return APIError(400, "BadRequest", str(err))
    if version_kind and version_kind[1]:
        version, kind = version_kind
        return APIError(400, "BadRequest",
                        f"{kind} in version {go_quote(version)} cannot be handled as a {expected_kind}: {err}")
    return APIError(400, "BadRequest", f"the object provided is unrecognized (must be of type {expected_kind}): "
                                       f"{err} ({_summarize(body)})")
