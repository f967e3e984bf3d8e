"""Generate pocketkube/apiserver/schema_data.json: the field schema of every kind we serve.

Source of truth: the official `kubernetes` Python client, whose models are generated from the
Kubernetes OpenAPI document (`openapi_types`: python attr -> type string, `attribute_map`:
python attr -> JSON name, pydantic `model_fields`: required flags and IntOrString unions).
The client does not say everything the Go decoder's messages need, so this file adds the Go
facts by hand: which integers are int64 (the rest are int32), which strings are Quantities,
which timestamps are MicroTime, and the named Go types of enum-like fields.

Output: {"source", "kinds": {"<apiVersion>/<Kind>": definition}, "types": {definition:
{"go": GoName, "fields": {json: type}, "required": [...], "gotypes": {json: go type}}}}.
Field types: string bool int32 int64 float64 bytes intstr quantity time microtime raw,
"@<definition>" for a struct, "[]<type>" for a list, "{}<type>" for a map with string keys.

It also writes schema_docs.json, what `kubectl explain` prints: the type and field descriptions
of the Kubernetes 1.32 release (from the JSON schemas kubernetes-validate ships, a test
dependency) and, by hand, the enum values of the `+enum` string fields.

Run: .venv/bin/python tools/gen_schema.py   (deterministic: same client -> same file)
"""

from __future__ import annotations

import json
import re
import sys
import typing
from pathlib import Path

import kubernetes
import kubernetes.client.models as models

OUTPUT = Path(__file__).resolve().parent.parent / "pocketkube" / "apiserver" / "schema_data.json"
DOCS_OUTPUT = OUTPUT.with_name("schema_docs.json")
DOCS_VERSION = "v1.32.0-local"  # the kubernetes-validate schema set the descriptions come from

# (apiVersion, kind, python class) for every kind served, then their lists.
SERVED_KINDS = [
    ("v1", "Namespace", "V1Namespace"),
    ("v1", "Pod", "V1Pod"),
    ("v1", "Service", "V1Service"),
    ("v1", "Endpoints", "V1Endpoints"),
    ("v1", "Node", "V1Node"),
    ("v1", "Secret", "V1Secret"),
    ("v1", "ConfigMap", "V1ConfigMap"),
    ("v1", "ServiceAccount", "V1ServiceAccount"),
    ("v1", "Event", "CoreV1Event"),
    ("v1", "ReplicationController", "V1ReplicationController"),
    ("v1", "ResourceQuota", "V1ResourceQuota"),
    ("v1", "LimitRange", "V1LimitRange"),
    ("v1", "PersistentVolumeClaim", "V1PersistentVolumeClaim"),
    ("v1", "PersistentVolume", "V1PersistentVolume"),
    ("networking.k8s.io/v1", "NetworkPolicy", "V1NetworkPolicy"),
    ("apps/v1", "Deployment", "V1Deployment"),
    ("apps/v1", "ReplicaSet", "V1ReplicaSet"),
    ("apps/v1", "StatefulSet", "V1StatefulSet"),
    ("apps/v1", "DaemonSet", "V1DaemonSet"),
    ("batch/v1", "Job", "V1Job"),
    ("batch/v1", "CronJob", "V1CronJob"),
    ("rbac.authorization.k8s.io/v1", "Role", "V1Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "V1ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "V1RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "V1ClusterRoleBinding"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "V1ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "V1MutatingWebhookConfiguration"),
    ("discovery.k8s.io/v1", "EndpointSlice", "V1EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress", "V1Ingress"),
    ("networking.k8s.io/v1", "IngressClass", "V1IngressClass"),
    ("events.k8s.io/v1", "Event", "EventsV1Event"),
    ("coordination.k8s.io/v1", "Lease", "V1Lease"),
    ("autoscaling/v1", "Scale", "V1Scale"),
    ("meta/v1", "DeleteOptions", "V1DeleteOptions"),
]
LIST_CLASSES = {"CoreV1Event": "CoreV1EventList", "EventsV1Event": "EventsV1EventList"}
NO_LIST = {"V1Scale", "V1DeleteOptions"}
EXTRA_META = [("meta/v1", "Status", "V1Status")]

# OpenAPI definition prefix of each API group's Go package.
GROUP_PACKAGE = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "discovery.k8s.io": "io.k8s.api.discovery.v1",
    "networking.k8s.io": "io.k8s.api.networking.v1",
    "events.k8s.io": "io.k8s.api.events.v1",
    "coordination.k8s.io": "io.k8s.api.coordination.v1",
    "autoscaling": "io.k8s.api.autoscaling.v1",
    "batch": "io.k8s.api.batch.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "admissionregistration.k8s.io": "io.k8s.api.admissionregistration.v1",
    "meta": "io.k8s.apimachinery.pkg.apis.meta.v1",
}
# Types of k8s.io/apimachinery/pkg/apis/meta/v1, with all they reach (every other type is
# placed by the kinds that reach it).
META_CLASSES = {
    "V1ObjectMeta", "V1ListMeta", "V1LabelSelector", "V1LabelSelectorRequirement",
    "V1ManagedFieldsEntry", "V1OwnerReference", "V1Condition", "V1DeleteOptions",
    "V1Preconditions", "V1Status", "V1StatusDetails", "V1StatusCause",
}
# Core kinds not served but whose reachable types are core/v1 (pod templates, PVC templates).
CORE_ANCHORS = ["V1PodTemplate", "V1ObjectReference"]

# Go int64 fields ("Class.jsonName"); every other integer is an int32.
INT64_FIELDS = {
    "V1ObjectMeta.generation", "V1ObjectMeta.deletionGracePeriodSeconds",
    "V1PodSpec.terminationGracePeriodSeconds", "V1PodSpec.activeDeadlineSeconds",
    "V1JobSpec.activeDeadlineSeconds", "V1CronJobSpec.startingDeadlineSeconds",
    "V1Probe.terminationGracePeriodSeconds",
    "V1PodSecurityContext.fsGroup", "V1PodSecurityContext.runAsUser",
    "V1PodSecurityContext.runAsGroup", "V1PodSecurityContext.supplementalGroups",
    "V1SecurityContext.runAsUser", "V1SecurityContext.runAsGroup",
    "V1LinuxContainerUser.uid", "V1LinuxContainerUser.gid",
    "V1LinuxContainerUser.supplementalGroups",
    "V1Toleration.tolerationSeconds", "V1ServiceAccountTokenProjection.expirationSeconds",
    "V1ContainerImage.sizeBytes", "V1DeleteOptions.gracePeriodSeconds", "V1SleepAction.seconds",
    "V1NodeSwapStatus.capacity", "V1Condition.observedGeneration",
    "V1PodCondition.observedGeneration", "V1PodStatus.observedGeneration",
    "V1DeploymentStatus.observedGeneration", "V1ReplicaSetStatus.observedGeneration",
    "V1StatefulSetStatus.observedGeneration", "V1DaemonSetStatus.observedGeneration",
}
# resource.Quantity fields (the client says 'str'); maps of them are v1.ResourceList.
QUANTITY_FIELDS = {
    "V1EmptyDirVolumeSource.sizeLimit", "V1ResourceFieldSelector.divisor",
    "V1NodeAllocatableMappedResources.quantity",
}
RESOURCE_LIST_FIELDS = {
    "V1ResourceRequirements.limits", "V1ResourceRequirements.requests",
    "V1VolumeResourceRequirements.limits", "V1VolumeResourceRequirements.requests",
    "V1NodeStatus.capacity", "V1NodeStatus.allocatable", "V1PodSpec.overhead",
    "V1ContainerStatus.allocatedResources", "V1PodStatus.allocatedResources",
    "V1PersistentVolumeClaimStatus.capacity", "V1PersistentVolumeClaimStatus.allocatedResources",
    "V1PersistentVolumeSpec.capacity",
    "V1ResourceQuotaSpec.hard", "V1ResourceQuotaStatus.hard", "V1ResourceQuotaStatus.used",
    "V1LimitRangeItem.max", "V1LimitRangeItem.min", "V1LimitRangeItem.default",
    "V1LimitRangeItem.defaultRequest", "V1LimitRangeItem.maxLimitRequestRatio",
}
# metav1.MicroTime fields; every other timestamp is a metav1.Time.
MICROTIME_FIELDS = {
    "CoreV1Event.eventTime", "EventsV1Event.eventTime", "CoreV1EventSeries.lastObservedTime",
    "EventsV1EventSeries.lastObservedTime", "V1LeaseSpec.acquireTime", "V1LeaseSpec.renewTime",
}
# Named Go types of string fields, as reflect prints them in "of type ..." messages.
NAMED_GO_TYPES = {
    "V1ObjectMeta.uid": "types.UID", "V1OwnerReference.uid": "types.UID",
    "V1Preconditions.uid": "types.UID",
    "V1ManagedFieldsEntry.operation": "v1.ManagedFieldsOperationType",
    "V1LabelSelectorRequirement.operator": "v1.LabelSelectorOperator",
    "V1DeleteOptions.propagationPolicy": "v1.DeletionPropagation",
    "V1Container.imagePullPolicy": "v1.PullPolicy",
    "V1Container.terminationMessagePolicy": "v1.TerminationMessagePolicy",
    "V1Container.restartPolicy": "v1.ContainerRestartPolicy",
    "V1ContainerPort.protocol": "v1.Protocol", "V1ServicePort.protocol": "v1.Protocol",
    "CoreV1EndpointPort.protocol": "v1.Protocol", "DiscoveryV1EndpointPort.protocol": "v1.Protocol",
    "V1PortStatus.protocol": "v1.Protocol",
    "V1PodSpec.restartPolicy": "v1.RestartPolicy", "V1PodSpec.dnsPolicy": "v1.DNSPolicy",
    "V1PodSpec.preemptionPolicy": "v1.PreemptionPolicy",
    "V1PodStatus.phase": "v1.PodPhase", "V1PodStatus.qosClass": "v1.PodQOSClass",
    "V1PodCondition.type": "v1.PodConditionType", "V1PodCondition.status": "v1.ConditionStatus",
    "V1ServiceSpec.type": "v1.ServiceType", "V1ServiceSpec.sessionAffinity": "v1.ServiceAffinity",
    "V1ServiceSpec.externalTrafficPolicy": "v1.ServiceExternalTrafficPolicy",
    "V1ServiceSpec.internalTrafficPolicy": "v1.ServiceInternalTrafficPolicy",
    "V1ServiceSpec.ipFamilyPolicy": "v1.IPFamilyPolicy",
    "V1ServiceSpec.ipFamilies": "[]v1.IPFamily",
    "V1Secret.type": "v1.SecretType",
    "V1Capabilities.add": "[]v1.Capability", "V1Capabilities.drop": "[]v1.Capability",
    "V1Toleration.operator": "v1.TolerationOperator", "V1Toleration.effect": "v1.TaintEffect",
    "V1Taint.effect": "v1.TaintEffect",
    "V1NodeSelectorRequirement.operator": "v1.NodeSelectorOperator",
    "V1HTTPGetAction.scheme": "v1.URIScheme",
    "V1NodeCondition.type": "v1.NodeConditionType", "V1NodeCondition.status": "v1.ConditionStatus",
    "V1NodeAddress.type": "v1.NodeAddressType",
    "V1NamespaceStatus.phase": "v1.NamespacePhase", "V1NamespaceSpec.finalizers": "[]v1.FinalizerName",
    "V1NamespaceCondition.type": "v1.NamespaceConditionType",
    "V1NamespaceCondition.status": "v1.ConditionStatus",
    "V1DeploymentStrategy.type": "v1.DeploymentStrategyType",
    "V1DeploymentCondition.type": "v1.DeploymentConditionType",
    "V1DeploymentCondition.status": "v1.ConditionStatus",
    "V1ReplicaSetCondition.type": "v1.ReplicaSetConditionType",
    "V1ReplicaSetCondition.status": "v1.ConditionStatus",
    "V1StatefulSetCondition.type": "v1.StatefulSetConditionType",
    "V1StatefulSetCondition.status": "v1.ConditionStatus",
    "V1DaemonSetCondition.type": "v1.DaemonSetConditionType",
    "V1DaemonSetCondition.status": "v1.ConditionStatus",
    "V1StatefulSetSpec.podManagementPolicy": "v1.PodManagementPolicyType",
    "V1StatefulSetUpdateStrategy.type": "v1.StatefulSetUpdateStrategyType",
    "V1DaemonSetUpdateStrategy.type": "v1.DaemonSetUpdateStrategyType",
    "V1EndpointSlice.addressType": "v1.AddressType",
    "V1HTTPIngressPath.pathType": "v1.PathType",
    "V1HostPathVolumeSource.type": "v1.HostPathType",
    "V1EmptyDirVolumeSource.medium": "v1.StorageMedium",
    "V1VolumeMount.mountPropagation": "v1.MountPropagationMode",
    "V1PersistentVolumeClaimSpec.accessModes": "[]v1.PersistentVolumeAccessMode",
    "V1PersistentVolumeClaimSpec.volumeMode": "v1.PersistentVolumeMode",
    "V1SecurityContext.procMount": "v1.ProcMountType",
    "V1SeccompProfile.type": "v1.SeccompProfileType",
    "V1AppArmorProfile.type": "v1.AppArmorProfileType",
    "V1PodSecurityContext.fsGroupChangePolicy": "v1.PodFSGroupChangePolicy",
    "V1PodSecurityContext.supplementalGroupsPolicy": "v1.SupplementalGroupsPolicy",
    "V1TopologySpreadConstraint.whenUnsatisfiable": "v1.UnsatisfiableConstraintAction",
    "V1TopologySpreadConstraint.nodeAffinityPolicy": "v1.NodeInclusionPolicy",
    "V1TopologySpreadConstraint.nodeTaintsPolicy": "v1.NodeInclusionPolicy",
    "V1PodOS.name": "v1.OSName",
}
# Enum values of string fields, as the 1.32 OpenAPI document lists them (`+enum` Go types;
# the client's models do not carry them). `kubectl explain` prints them as "enum: A, B".
ENUM_VALUES = {
    "V1ContainerPort.protocol": ["SCTP", "TCP", "UDP"], "V1ServicePort.protocol": ["SCTP", "TCP", "UDP"],
    "CoreV1EndpointPort.protocol": ["SCTP", "TCP", "UDP"],
    "DiscoveryV1EndpointPort.protocol": ["SCTP", "TCP", "UDP"], "V1PortStatus.protocol": ["SCTP", "TCP", "UDP"],
    "V1ServiceSpec.type": ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    "V1ServiceSpec.sessionAffinity": ["ClientIP", "None"],
    "V1ServiceSpec.externalTrafficPolicy": ["Cluster", "Local"],
    "V1ServiceSpec.internalTrafficPolicy": ["Cluster", "Local"],
    "V1ServiceSpec.ipFamilyPolicy": ["PreferDualStack", "RequireDualStack", "SingleStack"],
    "V1Container.imagePullPolicy": ["Always", "IfNotPresent", "Never"],
    "V1Container.terminationMessagePolicy": ["FallbackToLogsOnError", "File"],
    "V1PodSpec.restartPolicy": ["Always", "Never", "OnFailure"],
    "V1PodSpec.dnsPolicy": ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    "V1PodSpec.preemptionPolicy": ["Never", "PreemptLowerPriority"],
    "V1PodStatus.phase": ["Failed", "Pending", "Running", "Succeeded", "Unknown"],
    "V1PodStatus.qosClass": ["BestEffort", "Burstable", "Guaranteed"],
    "V1Toleration.operator": ["Equal", "Exists"],
    "V1Toleration.effect": ["NoExecute", "NoSchedule", "PreferNoSchedule"],
    "V1Taint.effect": ["NoExecute", "NoSchedule", "PreferNoSchedule"],
    "V1NodeSelectorRequirement.operator": ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
    "V1HTTPGetAction.scheme": ["HTTP", "HTTPS"],
    "V1NamespaceStatus.phase": ["Active", "Terminating"],
    "V1DeploymentStrategy.type": ["Recreate", "RollingUpdate"],
    "V1StatefulSetSpec.podManagementPolicy": ["OrderedReady", "Parallel"],
    "V1StatefulSetUpdateStrategy.type": ["OnDelete", "RollingUpdate"],
    "V1DaemonSetUpdateStrategy.type": ["OnDelete", "RollingUpdate"],
    "V1EndpointSlice.addressType": ["FQDN", "IPv4", "IPv6"],
    "V1HTTPIngressPath.pathType": ["Exact", "ImplementationSpecific", "Prefix"],
}
# Fields the client marks required that Kubernetes 1.32 does not (`spec,omitempty` in Go).
NOT_REQUIRED = {"V1Deployment.spec", "V1ReplicaSet.spec", "V1StatefulSet.spec", "V1DaemonSet.spec"}
PRIMITIVES = {"str": "string", "bool": "bool", "float": "float64", "bytes": "bytes"}


def go_name(cls_name: str) -> str:
    """V1DeploymentSpec -> DeploymentSpec, CoreV1Event -> Event."""
    return re.sub(r"^(?:[A-Z][a-z]+)?V\d+(?:(?:alpha|beta)\d+)?", "", cls_name)


def model(cls_name: str):
    return getattr(models, cls_name)


def referenced_classes(cls_name: str) -> list[str]:
    names = []
    for type_str in model(cls_name).openapi_types.values():
        names += [n for n in re.findall(r"[A-Z]\w+", type_str) if n not in ("List", "Dict")]
    return names


def reachable(roots: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(reversed(roots))
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen[name] = None
        stack.extend(reversed(referenced_classes(name)))
    return list(seen)


def all_roots() -> list[tuple[str, str, str]]:
    roots = []
    for api_version, kind, cls in SERVED_KINDS + EXTRA_META:
        roots.append((api_version, kind, cls))
        if cls not in NO_LIST and (api_version, kind, cls) not in EXTRA_META:
            roots.append((api_version, kind + "List", LIST_CLASSES.get(cls, cls + "List")))
    return roots


def place_classes() -> dict[str, str]:
    """Python class -> OpenAPI definition name, by the group of the kinds that reach it."""
    meta = set(reachable(sorted(META_CLASSES)))
    core = set(reachable([c for av, _, c in SERVED_KINDS if av == "v1"] + CORE_ANCHORS)) - meta
    definitions: dict[str, str] = {}
    for api_version, _, cls in all_roots():
        group = api_version.rpartition("/")[0] if "/" in api_version else ""
        for name in reachable([cls]):
            if name in meta:
                package = GROUP_PACKAGE["meta"]
            elif name in core:
                package = GROUP_PACKAGE[""]
            else:
                package = GROUP_PACKAGE[group]
            definition = f"{package}.{go_name(name)}"
            if definitions.setdefault(name, definition) != definition:
                sys.exit(f"{name} is reachable from two groups: {definitions[name]}, {definition}")
    return definitions


def pydantic_field(cls_name: str, json_name: str):
    """The pydantic FieldInfo of a JSON field (python names may differ: `_exec` is `var_exec`)."""
    for name, info in model(cls_name).model_fields.items():
        if (info.serialization_alias or name) == json_name:
            return info
    raise KeyError(f"{cls_name}.{json_name}")


def is_int_or_string(cls_name: str, json_name: str) -> bool:
    annotation = pydantic_field(cls_name, json_name).annotation
    args = {getattr(a, "__origin__", a) for a in typing.get_args(annotation)}
    return int in args and str in args


def field_type(cls_name: str, type_str: str, json_name: str, definitions: dict) -> str:
    key = f"{cls_name}.{json_name}"
    list_match = re.fullmatch(r"List\[(.+)\]", type_str)
    if list_match:
        return "[]" + field_type(cls_name, list_match.group(1), json_name, definitions)
    map_match = re.fullmatch(r"Dict\[str, (.+)\]", type_str)
    if map_match:
        elem = map_match.group(1)
        if key in RESOURCE_LIST_FIELDS:
            return "{}quantity"
        return "{}" + field_type(cls_name, elem, json_name, definitions)
    if type_str == "int":
        return "int64" if key in INT64_FIELDS else "int32"
    if type_str == "str":
        return "quantity" if key in QUANTITY_FIELDS else "string"
    if type_str == "datetime":
        return "microtime" if key in MICROTIME_FIELDS else "time"
    if type_str == "object":
        return "intstr" if is_int_or_string(cls_name, json_name) else "raw"
    if type_str in PRIMITIVES:
        return PRIMITIVES[type_str]
    return "@" + definitions[type_str]


def describe_class(cls_name: str, definitions: dict) -> dict:
    cls = model(cls_name)
    fields, required, gotypes = {}, [], {}
    for attr in sorted(cls.openapi_types, key=lambda a: cls.attribute_map[a]):
        json_name = cls.attribute_map[attr]
        fields[json_name] = field_type(cls_name, cls.openapi_types[attr], json_name, definitions)
        key = f"{cls_name}.{json_name}"
        if pydantic_field(cls_name, json_name).is_required() and key not in NOT_REQUIRED:
            required.append(json_name)
        if key in NAMED_GO_TYPES:
            gotypes[json_name] = NAMED_GO_TYPES[key]
        elif key in RESOURCE_LIST_FIELDS:
            gotypes[json_name] = "v1.ResourceList"
    entry: dict = {"go": go_name(cls_name), "fields": fields}
    if required:
        entry["required"] = required
    if gotypes:
        entry["gotypes"] = gotypes
    return entry


def check_hand_facts(definitions: dict) -> None:
    """Every hand-written Go fact must name a real field: a typo would silently be ignored."""
    known = {f"{name}.{json}" for name in definitions for json in model(name).attribute_map.values()}
    facts = INT64_FIELDS | QUANTITY_FIELDS | RESOURCE_LIST_FIELDS | MICROTIME_FIELDS | NOT_REQUIRED
    facts |= set(NAMED_GO_TYPES) | set(ENUM_VALUES)
    if facts - known:
        sys.exit(f"hand-written Go facts name unknown fields: {sorted(facts - known)}")


def generate() -> dict:
    definitions = place_classes()
    check_hand_facts(definitions)
    kinds = {f"{av}/{kind}": definitions[cls] for av, kind, cls in all_roots()}
    types = {definitions[name]: describe_class(name, definitions) for name in sorted(definitions)}
    return {
        "source": f"kubernetes python client {kubernetes.__version__}",
        "kinds": dict(sorted(kinds.items())),
        "types": dict(sorted(types.items())),
    }


def kubernetes_definitions() -> dict:
    """The Kubernetes 1.32 definitions with their descriptions, as kubernetes-validate ships
    them (JSON schemas generated from the release's OpenAPI document)."""
    import kubernetes_validate

    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / DOCS_VERSION / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


def generate_docs() -> dict:
    """definition -> {"description", "fields": {json: {"description", "enum"}}}: what `kubectl
    explain` reads, kept apart from schema_data.json so the server loads it only for /openapi."""
    definitions = place_classes()
    source = kubernetes_definitions()
    docs: dict = {}
    for cls_name in sorted(definitions):
        definition = definitions[cls_name]
        upstream = source.get(definition, {})
        properties = upstream.get("properties", {})
        fields = {}
        for json_name in sorted(model(cls_name).attribute_map.values()):
            entry = {}
            description = (properties.get(json_name, {}).get("description")
                           or pydantic_field(cls_name, json_name).description)
            if description:
                entry["description"] = description
            if f"{cls_name}.{json_name}" in ENUM_VALUES:
                entry["enum"] = ENUM_VALUES[f"{cls_name}.{json_name}"]
            if entry:
                fields[json_name] = entry
        docs[definition] = {"description": upstream.get("description", ""), "fields": fields}
    return dict(sorted(docs.items()))


def render() -> str:
    """The file's text (the test compares it with the committed file)."""
    return json.dumps(generate(), indent=1) + "\n"


def render_docs() -> str:
    return json.dumps(generate_docs(), separators=(",", ":"), sort_keys=True) + "\n"


def main() -> None:
    for path, text in ((OUTPUT, render()), (DOCS_OUTPUT, render_docs())):
        path.write_text(text)
        print(f"wrote {path} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
