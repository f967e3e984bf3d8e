"""Pod spec and pod template defaults and validation, shared by Pod and the workload kinds.

Defaults follow SetDefaults_PodSpec / SetDefaults_Container / SetDefaults_Probe / ... of
k8s pkg/apis/core/v1/defaults.go; validation follows ValidatePodSpec and
ValidatePodTemplateSpec of pkg/apis/core/validation (1.32), for the fields users touch.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from pocketkube.apiserver import validation as v
from pocketkube.core.quantity import parse_quantity
from pocketkube.core.errors import FieldError, duplicate, forbidden, invalid_value, not_found_field, not_supported, required

SUPPORTED_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_VOLUME_TYPES = (
    "hostPath", "emptyDir", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
    "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs", "downwardAPI", "fc", "azureFile",
    "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume", "projected", "scaleIO",
    "configMap", "storageos", "csi", "ephemeral", "image",
)
_HANDLER_TYPES = ("exec", "httpGet", "tcpSocket", "grpc")
_DEFAULT_MODE = 0o644

# ---------------------------------------------------------------- defaults


def image_tag(image: str) -> str:
    """The tag ParseImageName finds: "latest" when there is neither tag nor digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    return "" if digest else "latest"


def default_probe(probe: dict | None) -> None:
    if not probe:
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    default_handler(probe)


def default_handler(handler: dict | None) -> None:
    if not handler:
        return
    http_get = handler.get("httpGet")
    if isinstance(http_get, dict):
        http_get.setdefault("path", "/")
        http_get.setdefault("scheme", "HTTP")


def _default_field_ref(source: dict | None) -> None:
    if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
        source["fieldRef"].setdefault("apiVersion", "v1")


def default_container(container: dict) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = "Always" if image_tag(container.get("image") or "") == "latest" else "IfNotPresent"
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        _default_field_ref(env.get("valueFrom"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        default_probe(container.get(probe))
    lifecycle = container.get("lifecycle") or {}
    for hook in ("postStart", "preStop"):
        default_handler(lifecycle.get(hook))


def default_volume(volume: dict) -> None:
    if not any(key in volume for key in _VOLUME_TYPES):
        volume["emptyDir"] = {}
    for source in ("secret", "configMap", "projected", "downwardAPI"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", _DEFAULT_MODE)
    for item in (volume.get("downwardAPI") or {}).get("items") or []:
        _default_field_ref(item)
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec plus the defaults of everything inside it (templates get exactly this)."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        default_container(container)
    for container in spec.get("ephemeralContainers") or []:
        default_container(container)
    for volume in spec.get("volumes") or []:
        default_volume(volume)


def default_pod_template(template: dict) -> None:
    metadata = template.setdefault("metadata", {})
    metadata.setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def default_requests_from_limits(container: dict) -> None:
    """SetDefaults_Pod: a resource with a limit and no request gets the limit as request."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    if not limits:
        return
    requests = resources.setdefault("requests", {})
    for name, quantity in limits.items():
        requests.setdefault(name, quantity)


# ---------------------------------------------------------------- quantities and QoS

def qos_class(spec: dict) -> str:
    """GetPodQOS: BestEffort, Guaranteed or Burstable, from cpu and memory of every container."""
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        resources = container.get("resources") or {}
        container_limits = set()
        for name, quantity in (resources.get("requests") or {}).items():
            amount = parse_quantity(quantity)
            if name in ("cpu", "memory") and amount:
                requests[name] = requests.get(name, 0) + amount
        for name, quantity in (resources.get("limits") or {}).items():
            amount = parse_quantity(quantity)
            if name in ("cpu", "memory") and amount:
                container_limits.add(name)
                limits[name] = limits.get(name, 0) + amount
        if container_limits != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


# ---------------------------------------------------------------- validation


def _validate_ports(ports: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        name = port.get("name") or ""
        if name:
            msgs = v.is_valid_port_name(name)
            if msgs:
                errs += [invalid_value(p + ".name", name, m) for m in msgs]
            elif name in names:
                errs.append(duplicate(p + ".name", name))
            else:
                names.add(name)
        container_port = port.get("containerPort") or 0
        if container_port == 0:
            errs.append(required(p + ".containerPort"))
        else:
            errs += [invalid_value(p + ".containerPort", container_port, m) for m in v.is_valid_port_num(container_port)]
        host_port = port.get("hostPort") or 0
        if host_port:
            errs += [invalid_value(p + ".hostPort", host_port, m) for m in v.is_valid_port_num(host_port)]
        protocol = port.get("protocol") or ""
        if not protocol:
            errs.append(required(p + ".protocol"))
        elif protocol not in SUPPORTED_PROTOCOLS:
            errs.append(not_supported(p + ".protocol", protocol, SUPPORTED_PROTOCOLS))
    return errs


def _validate_env(env: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, var in enumerate(env):
        p = f"{path}[{i}]"
        name = var.get("name") or ""
        if not name:
            errs.append(required(p + ".name"))
        errs += [invalid_value(p + ".name", name, m) for m in v.is_relaxed_env_var_name(name)]
        value_from = var.get("valueFrom")
        if value_from is None:
            continue
        sources = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if value_from.get(k)]
        if len(sources) == 0:
            errs.append(invalid_value(p + ".valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                      "`configMapKeyRef` or `secretKeyRef`"))
        elif len(sources) > 1:
            errs.append(invalid_value(p + ".valueFrom", "", "may not have more than one field specified at a time"))
        if var.get("value") and sources:
            errs.append(invalid_value(p + ".valueFrom", "", "may not be specified when `value` is not empty"))
    return errs


def _validate_handler(handler: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for kind in _HANDLER_TYPES:
        if handler.get(kind) is None:
            continue
        if count > 0:
            errs.append(forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        action = handler[kind]
        if kind == "exec" and not action.get("command"):
            errs.append(required(f"{path}.exec.command"))
        elif kind == "httpGet":
            if not action.get("path"):
                errs.append(required(f"{path}.httpGet.path"))
            errs += v.validate_port_num_or_name(action.get("port"), f"{path}.httpGet.port")
            scheme = action.get("scheme") or ""
            if scheme not in ("HTTP", "HTTPS"):
                errs.append(not_supported(f"{path}.httpGet.scheme", scheme, ["HTTP", "HTTPS"]))
            for j, header in enumerate(action.get("httpHeaders") or []):
                errs += [invalid_value(f"{path}.httpGet.httpHeaders[{j}].name", header.get("name", ""), m)
                         for m in v.is_http_header_name(header.get("name", ""))]
        elif kind == "tcpSocket":
            errs += v.validate_port_num_or_name(action.get("port"), f"{path}.tcpSocket.port")
        elif kind == "grpc":
            errs += [invalid_value(f"{path}.grpc.port", action.get("port", 0), m)
                     for m in v.is_valid_port_num(action.get("port") or 0)]
    if count == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: dict | None, path: str, kind: str) -> list[FieldError]:
    if probe is None:
        return []
    errs = _validate_handler(probe, path)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += v.validate_nonnegative(probe.get(key) or 0, f"{path}.{key}")
    if kind in ("liveness", "startup") and probe.get("successThreshold") != 1:
        errs.append(invalid_value(path + ".successThreshold", probe.get("successThreshold") or 0, "must be 1"))
    if kind == "readiness" and probe.get("terminationGracePeriodSeconds") is not None:
        errs.append(invalid_value(path + ".terminationGracePeriodSeconds", probe["terminationGracePeriodSeconds"],
                                  "must not be set for readinessProbes"))
    return errs


def _validate_resources(resources: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for section, values in (("limits", limits), ("requests", requests)):
        for name in sorted(values):
            p = f"{path}.{section}[{name}]"
            errs += v.validate_qualified_name(name, p)
            amount = parse_quantity(values[name])
            if amount is not None and amount < 0:
                errs.append(invalid_value(p, str(values[name]), v.IS_NEGATIVE_ERROR_MSG))
    for name in sorted(requests):
        request, limit = parse_quantity(requests[name]), parse_quantity(limits.get(name))
        if request is not None and limit is not None and request > limit:
            errs.append(invalid_value(f"{path}.requests[{name}]", str(requests[name]),
                                      f"must be less than or equal to {name} limit of {limits[name]}"))
    return errs


def _validate_volume_mounts(mounts: list, volume_names: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    mount_paths: set[str] = set()
    for i, mount in enumerate(mounts):
        p = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(required(p + ".name"))
        elif name not in volume_names:
            errs.append(not_found_field(p + ".name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(required(p + ".mountPath"))
        elif mount_path in mount_paths:
            errs.append(invalid_value(p + ".mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
    return errs


def _validate_container(container: dict, volume_names: set[str], path: str) -> list[FieldError]:
    """validateContainerCommon: name, termination message policy, ports, env, mounts, pull policy, resources."""
    errs: list[FieldError] = []
    name = container.get("name") or ""
    if not name:
        errs.append(required(path + ".name"))
    else:
        errs += v.validate_dns1123_label(name, path + ".name")
    policy = container.get("terminationMessagePolicy") or ""
    if not policy:
        errs.append(required(path + ".terminationMessagePolicy"))
    elif policy not in ("File", "FallbackToLogsOnError"):
        errs.append(not_supported(path + ".terminationMessagePolicy", policy, ["File", "FallbackToLogsOnError"]))
    errs += _validate_ports(container.get("ports") or [], path + ".ports")
    errs += _validate_env(container.get("env") or [], path + ".env")
    errs += _validate_volume_mounts(container.get("volumeMounts") or [], volume_names, path + ".volumeMounts")
    pull = container.get("imagePullPolicy") or ""
    if not pull:
        errs.append(required(path + ".imagePullPolicy"))
    elif pull not in ("Always", "IfNotPresent", "Never"):
        errs.append(not_supported(path + ".imagePullPolicy", pull, ["Always", "IfNotPresent", "Never"]))
    errs += _validate_resources(container.get("resources") or {}, path + ".resources")
    return errs


def _validate_containers(containers: list, names: set[str], volume_names: set[str], path: str,
                         regular: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    if regular and not containers:
        return [required(path)]
    host_ports: set[str] = set()
    for i, container in enumerate(containers):
        p = f"{path}[{i}]"
        errs += _validate_container(container, volume_names, p)
        name = container.get("name") or ""
        if name in names:
            errs.append(duplicate(p + ".name", name))
        else:
            names.add(name)
        if not container.get("image"):
            errs.append(required(p + ".image"))
        elif container["image"].strip() != container["image"]:
            errs.append(invalid_value(p + ".image", container["image"], "must not have leading or trailing whitespace"))
        if regular:
            errs += _validate_probe(container.get("livenessProbe"), p + ".livenessProbe", "liveness")
            errs += _validate_probe(container.get("readinessProbe"), p + ".readinessProbe", "readiness")
            errs += _validate_probe(container.get("startupProbe"), p + ".startupProbe", "startup")
            if container.get("restartPolicy") is not None:
                errs.append(forbidden(p + ".restartPolicy", "may not be set for non-init containers"))
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                key = f"{port.get('hostIP', '')}/{port.get('protocol', '')}/{port['hostPort']}"
                if key in host_ports:
                    errs.append(duplicate(f"{p}.ports[{j}].hostPort", key))
                host_ports.add(key)
    return errs


def _validate_volumes(volumes: list, path: str) -> tuple[set[str], list[FieldError]]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        p = f"{path}[{i}]"
        problems: list[FieldError] = []
        types = [t for t in _VOLUME_TYPES if volume.get(t) is not None]
        for extra in types[1:]:
            problems.append(forbidden(f"{p}.{extra}", "may not specify more than 1 volume type"))
        if not types:
            problems.append(required(p, "must specify a volume type"))
        problems += _validate_volume_source(volume, p)
        name = volume.get("name") or ""
        if not name:
            problems.append(required(p + ".name"))
        else:
            problems += v.validate_dns1123_label(name, p + ".name")
        if name in names:
            problems.append(duplicate(p + ".name", name))
        if problems:
            errs += problems
        else:
            names.add(name)
    return names, errs


def _validate_volume_source(volume: dict, path: str) -> list[FieldError]:
    required_fields = {"hostPath": "path", "secret": "secretName", "configMap": "name",
                       "persistentVolumeClaim": "claimName"}
    errs: list[FieldError] = []
    for source, key in required_fields.items():
        if isinstance(volume.get(source), dict) and not volume[source].get(key):
            errs.append(required(f"{path}.{source}.{key}"))
    return errs


def _validate_tolerations(tolerations: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, toleration in enumerate(tolerations):
        p = f"{path}[{i}]"
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or ""
        if key:
            errs += v.validate_label_name(key, p + ".key")
        if not key and operator != "Exists":
            errs.append(invalid_value(p + ".operator", operator,
                                      'operator must be Exists when `key` is empty, which means "match all values and all keys"'))
        if toleration.get("tolerationSeconds") is not None and toleration.get("effect") != "NoExecute":
            errs.append(invalid_value(p + ".effect", toleration.get("effect") or "",
                                      "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if operator in ("", "Equal"):
            errs += [invalid_value(p + ".value", toleration.get("value") or "", m)
                     for m in v.is_label_value(toleration.get("value") or "")]
        elif operator == "Exists":
            if toleration.get("value"):
                errs.append(invalid_value(p + ".operator", toleration.get("value"),
                                          "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(p + ".operator", operator, ["Equal", "Exists"]))
        effect = toleration.get("effect") or ""
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(not_supported(p + ".effect", effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"]))
    return errs


def validate_pod_spec(spec: dict, path: str) -> list[FieldError]:
    """ValidatePodSpec, in Kubernetes' order, for the fields users touch."""
    volume_names, errs = _validate_volumes(spec.get("volumes") or [], path + ".volumes")
    names: set[str] = set()
    errs += _validate_containers(spec.get("containers") or [], names, volume_names, path + ".containers", True)
    errs += _validate_containers(spec.get("initContainers") or [], names, volume_names, path + ".initContainers", False)
    restart = spec.get("restartPolicy") or ""
    if not restart:
        errs.append(required(path + ".restartPolicy"))
    elif restart not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(path + ".restartPolicy", restart, ["Always", "OnFailure", "Never"]))
    dns = spec.get("dnsPolicy") or ""
    dns_values = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if not dns:
        errs.append(required(path + ".dnsPolicy"))
    elif dns not in dns_values:
        errs.append(not_supported(path + ".dnsPolicy", dns, dns_values))
    errs += v.validate_labels(spec.get("nodeSelector"), path + ".nodeSelector")
    if spec.get("shareProcessNamespace") and spec.get("hostPID"):
        # both live in the internal PodSecurityContext, hence the path
        errs.append(invalid_value(path + ".securityContext.shareProcessNamespace", True,
                                  "ShareProcessNamespace and HostPID cannot both be enabled"))
    for key, field in (("serviceAccountName", "serviceAccountName"), ("nodeName", "nodeName")):
        if spec.get(key):
            errs += [invalid_value(f"{path}.{field}", spec[key], m) for m in v.name_is_dns_subdomain(spec[key])]
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= v.MAX_INT32:
        errs.append(invalid_value(path + ".activeDeadlineSeconds", deadline, v.inclusive_range_error(1, v.MAX_INT32)))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs += v.validate_dns1123_label(spec[key], f"{path}.{key}")
    errs += _validate_tolerations(spec.get("tolerations") or [], path + ".tolerations")
    return errs


def validate_pod_template(template: dict | None, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec: template labels and annotations, then the pod spec."""
    if template is None:
        return [required(path)]
    metadata = template.get("metadata") or {}
    errs = v.validate_labels(metadata.get("labels"), path + ".labels")
    errs += v.validate_annotations(metadata.get("annotations"), path + ".annotations")
    errs += validate_pod_spec(template.get("spec") or {}, path + ".spec")
    if (template.get("spec") or {}).get("ephemeralContainers"):
        errs.append(forbidden(path + ".spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))
    return errs


def validate_controller_template(template: dict | None, selector: dict | None, path: str,
                                 kind: str) -> list[FieldError]:
    """ValidatePodTemplateSpecFor{ReplicaSet,StatefulSet,DaemonSet}: selector match, template, restartPolicy."""
    if template is None:
        return [required(path)]
    labels = (template.get("metadata") or {}).get("labels")
    errs: list[FieldError] = []
    if not v.selector_is_empty(selector) and not v.selector_matches(selector, labels):
        errs.append(v.invalid_go(path + ".metadata.labels", v.go_string_map(labels),
                                 "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, path)
    spec = template.get("spec") or {}
    restart = spec.get("restartPolicy") or ""
    if restart != "Always":
        errs.append(not_supported(path + ".spec.restartPolicy", restart, ["Always"]))
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(path + ".spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {kind} is not Supported"))
    return errs
