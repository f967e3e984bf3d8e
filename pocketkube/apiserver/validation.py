"""Generic validators with Kubernetes 1.32's exact messages (apimachinery util/validation).

Two layers, as in apimachinery:
- `is_*` functions take a value and return a list of problem strings (empty = valid);
- `validate_*` functions take a value and a field path and return `FieldError`s.

ObjectMeta validation (names, generateName, labels, annotations, finalizers,
ownerReferences) and the update rules of metadata live here too, as do the helpers that
render a bad value the way Go's `%#v` prints it (maps, label selectors, IntOrString),
because several kinds report such values.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from pocketkube.core.errors import OMIT, FieldError, forbidden, go_quote, invalid_value, required, too_long

# ---------------------------------------------------------------- message builders


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def empty_error() -> str:
    return "must be non-empty"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


IS_NEGATIVE_ERROR_MSG = "must be greater than or equal to 0"
FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
MAX_INT32 = 2**31 - 1

# ---------------------------------------------------------------- names

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                      "and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                          "'-' or '.', and must start and end with an alphanumeric character")
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                      "alphabetic character, and end with an alphanumeric character")
_WILDCARD_FMT = "\\*\\." + _DNS1123_SUBDOMAIN_FMT
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must "
                 "consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character")
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_ENV_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_NAME_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
                 "and must not start with a digit")
_RELAXED_ENV_NAME_MSG = "a valid environment variable name must consist only of printable ASCII characters other than '='"
_PERCENT_FMT = "[0-9]+%"
_PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"
_HTTP_HEADER_FMT = "[-A-Za-z0-9]+"
_HTTP_HEADER_MSG = "a valid HTTP header must consist of alphanumeric characters or '-'"
_HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"


def _full(fmt: str) -> re.Pattern:
    return re.compile("^(?:" + fmt + ")$")


_DNS1123_LABEL_RE = _full(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = _full(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = _full(_DNS1035_LABEL_FMT)
_WILDCARD_RE = _full(_WILDCARD_FMT)
_QNAME_RE = _full(_QNAME_FMT)
_LABEL_VALUE_RE = _full(_LABEL_VALUE_FMT)
_CONFIG_KEY_RE = _full(_CONFIG_KEY_FMT)
_ENV_NAME_RE = _full(_ENV_NAME_FMT)
_PERCENT_RE = _full(_PERCENT_FMT)
_HTTP_HEADER_RE = _full(_HTTP_HEADER_FMT)
_HTTP_PATH_RE = _full(_HTTP_PATH_FMT)
_PORT_NAME_CHARSET_RE = re.compile(r"^[-a-z0-9]+$")


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _WILDCARD_RE.match(value):
        errs.append(regex_error(_WILDCARD_MSG, _WILDCARD_FMT, "*.example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label key / qualified name: optional DNS-subdomain prefix, '/', name of <= 63 chars."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return errs + _chdir_prefix(value)


def is_env_var_name(value: str) -> list[str]:
    """The strict (pre-RelaxedEnvironmentVariableValidation) rule."""
    errs = []
    if not _ENV_NAME_RE.match(value):
        errs.append(regex_error(_ENV_NAME_MSG, _ENV_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    return errs + _chdir_prefix(value)


def is_relaxed_env_var_name(value: str) -> list[str]:
    """The rule 1.32 applies (RelaxedEnvironmentVariableValidation is beta and on)."""
    errs = []
    if not value:
        errs.append("environment variable name " + empty_error())
    if any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in value):
        errs.append(_RELAXED_ENV_NAME_MSG)
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 chars of [-a-z0-9], at least one letter, no '--', no edge '-'."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_percent(value: str) -> list[str]:
    return [] if _PERCENT_RE.match(value) else [regex_error(_PERCENT_MSG, _PERCENT_FMT, "1%", "93%")]


def is_http_header_name(value: str) -> list[str]:
    return [] if _HTTP_HEADER_RE.match(value) else [regex_error(_HTTP_HEADER_MSG, _HTTP_HEADER_FMT, "X-Header-Name")]


# ---------------------------------------------------------------- IPs and CIDRs


def parse_ip_sloppy(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's netutils.ParseIPSloppy: like net.ParseIP, but IPv4 octets may have leading zeros (read as decimal)."""
    if not value or "%" in value:
        return None
    if ":" not in value:
        octets = value.split(".")
        if len(octets) != 4 or not all(o.isdigit() and o.isascii() and 0 < len(o) <= 3 for o in octets):
            return None
        numbers = [int(o) for o in octets]
        if any(n > 255 for n in numbers):
            return None
        return ipaddress.IPv4Address(".".join(str(n) for n in numbers))
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return addr.ipv4_mapped or addr


def parse_cidr_sloppy(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    ip_text, sep, bits = value.partition("/")
    if not sep or not bits.isdigit() or (len(bits) > 1 and bits[0] == "0"):
        return None
    ip = parse_ip_sloppy(ip_text)
    if ip is None:
        return None
    prefix = int(bits)
    if isinstance(ip, ipaddress.IPv4Address) and ":" in ip_text:
        prefix -= 96  # an IPv4-mapped IPv6 CIDR
    if not 0 <= prefix <= ip.max_prefixlen:
        return None
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def is_ipv6_string(value: str) -> bool:
    ip = parse_ip_sloppy(value)
    return isinstance(ip, ipaddress.IPv6Address)


def is_valid_ip(path: str, value: str) -> list[FieldError]:
    if parse_ip_sloppy(value) is None:
        return [invalid_value(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def is_valid_ipv4_address(path: str, value: str) -> list[FieldError]:
    if not isinstance(parse_ip_sloppy(value), ipaddress.IPv4Address):
        return [invalid_value(path, value, "must be a valid IPv4 address")]
    return []


def is_valid_ipv6_address(path: str, value: str) -> list[FieldError]:
    if not isinstance(parse_ip_sloppy(value), ipaddress.IPv6Address):
        return [invalid_value(path, value, "must be a valid IPv6 address")]
    return []


def is_valid_cidr(path: str, value: str) -> list[FieldError]:
    if parse_cidr_sloppy(value) is None:
        return [invalid_value(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def validate_non_special_ip(value: str, path: str) -> list[FieldError]:
    """Endpoint addresses may not be unspecified, loopback or link-local (ValidateNonSpecialIP)."""
    ip = parse_ip_sloppy(value)
    if ip is None:
        return [invalid_value(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid_value(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid_value(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid_value(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip in ipaddress.ip_network("224.0.0.0/24") or ip in ipaddress.ip_network("ff02::/16"):
        errs.append(invalid_value(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def is_fully_qualified_domain_name(path: str, name: str) -> list[FieldError]:
    if not name:
        return [required(path)]
    name = name.removesuffix(".")
    msgs = is_dns1123_subdomain(name)
    if msgs:
        return [invalid_value(path, name, ",".join(msgs))]
    if len(name.split(".")) < 2:
        return [invalid_value(path, name, "should be a domain with at least two segments separated by dots")]
    for label in name.split("."):
        msgs = is_dns1123_label(label)
        if msgs:
            return [invalid_value(path, label, ",".join(msgs))]
    return []


def is_domain_prefixed_path(path: str, value: str) -> list[FieldError]:
    if not value:
        return [required(path)]
    segments = value.split("/", 1)
    if len(segments) != 2 or not segments[0] or not segments[1]:
        return [invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = [invalid_value(path, segments[0], m) for m in is_dns1123_subdomain(segments[0])]
    if not _HTTP_PATH_RE.match(segments[1]):
        errs.append(invalid_value(path, segments[1], regex_error("Invalid path", _HTTP_PATH_FMT)))
    return errs


# ---------------------------------------------------------------- field-path validators


def _each(path: str, value: Any, msgs: list[str]) -> list[FieldError]:
    return [invalid_value(path, value, m) for m in msgs]


def validate_dns1123_label(value: str, path: str) -> list[FieldError]:
    return _each(path, value, is_dns1123_label(value))


def validate_dns1123_subdomain(value: str, path: str) -> list[FieldError]:
    return _each(path, value, is_dns1123_subdomain(value))


def validate_qualified_name(value: str, path: str) -> list[FieldError]:
    return _each(path, value, is_qualified_name(value))


def validate_nonnegative(value: int, path: str) -> list[FieldError]:
    return [invalid_value(path, value, IS_NEGATIVE_ERROR_MSG)] if value < 0 else []


def validate_port_num_or_name(port: Any, path: str) -> list[FieldError]:
    """ValidatePortNumOrName for an IntOrString field."""
    if isinstance(port, bool):
        return [FieldError("Internal", path, OMIT, "unknown type")]
    if isinstance(port, int):
        return _each(path, port, is_valid_port_num(port))
    if isinstance(port, str):
        return _each(path, port, is_valid_port_name(port))
    return [FieldError("Internal", path, OMIT, "unknown type")]


def validate_immutable_field(new: Any, old: Any, path: str) -> list[FieldError]:
    if new == old:
        return []
    if isinstance(new, (str, int, float, bool, list, type(None))):
        return [invalid_value(path, new, FIELD_IMMUTABLE_ERROR_MSG)]
    return [invalid_go(path, go_repr(new), FIELD_IMMUTABLE_ERROR_MSG)]


# ---------------------------------------------------------------- Go %#v rendering of bad values


def invalid_go(path: str, rendered: str, detail: str) -> FieldError:
    """An Invalid error whose bad value is printed raw (as Go's %#v prints structs and maps)."""
    return FieldError("Invalid", path, OMIT, f"{rendered}: {detail}" if detail else rendered)


def duplicate_go(path: str, rendered: str) -> FieldError:
    return FieldError("Duplicate", path, OMIT, rendered)


def go_string_map(m: dict | None) -> str:
    if m is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(str(m[k]))}" for k in sorted(m)) + "}"


def go_string_slice(items: list | None) -> str:
    if items is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(str(i)) for i in items) + "}"


def go_label_selector(selector: dict) -> str:
    exprs = selector.get("matchExpressions")
    if exprs is None:
        rendered_exprs = "[]v1.LabelSelectorRequirement(nil)"
    else:
        rendered_exprs = "[]v1.LabelSelectorRequirement{" + ", ".join(
            f"v1.LabelSelectorRequirement{{Key:{go_quote(e.get('key', ''))}, Operator:{go_quote(e.get('operator', ''))}, "
            f"Values:{go_string_slice(e.get('values'))}}}" for e in exprs) + "}"
    return f"v1.LabelSelector{{MatchLabels:{go_string_map(selector.get('matchLabels'))}, MatchExpressions:{rendered_exprs}}}"


def go_int_or_string(value: Any) -> str:
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(value)}}}"
    return f"intstr.IntOrString{{Type:0, IntVal:{int(value or 0)}, StrVal:\"\"}}"


def go_repr(value: Any) -> str:
    """Best-effort %#v for the JSON values validation reports."""
    if isinstance(value, dict):
        if set(value) <= {"matchLabels", "matchExpressions"}:
            return go_label_selector(value)
        if all(isinstance(v, str) for v in value.values()):
            return go_string_map(value)
    return go_quote(str(value))


# ---------------------------------------------------------------- object names

NameFunc = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def validate_namespace_name(name: str, prefix: bool = False) -> list[str]:
    return name_is_dns_label(name, prefix)


def validate_node_name(name: str, prefix: bool = False) -> list[str]:
    return name_is_dns_subdomain(name, prefix)


# ---------------------------------------------------------------- ObjectMeta


def validate_label_name(key: str, path: str) -> list[FieldError]:
    return _each(path, key, is_qualified_name(key))


def validate_labels(labels: dict | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in sorted(labels or {}):
        errs += validate_label_name(key, path)
        value = labels[key]
        errs += _each(path, value, is_label_value(value if isinstance(value, str) else str(value)))
    return errs


def annotations_size(annotations: dict) -> int:
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())


def validate_annotations(annotations: dict | None, path: str) -> list[FieldError]:
    annotations = annotations or {}
    errs = []
    for key in sorted(annotations):
        errs += _each(path, key, is_qualified_name(key.lower()))
    if annotations_size(annotations) > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_owner_references(refs: list | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    controller = ""
    for ref in refs or []:
        api_version = ref.get("apiVersion", "")
        version = api_version.rsplit("/", 1)[-1] if api_version.count("/") <= 1 else ""
        if not version:
            errs.append(invalid_value(path + ".apiVersion", api_version, "version must not be empty"))
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                errs.append(invalid_value(f"{path}.{key}", ref.get(key, ""), "must not be empty"))
        if api_version == "v1" and ref.get("kind") == "Event":
            errs.append(invalid_go(path, "v1.OwnerReference{...}", "/v1, Kind=Event is disallowed from being an owner"))
        if ref.get("controller") is True:
            current = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                errs.append(invalid_go(path, "[]v1.OwnerReference{...}",
                                       'Only one reference can have Controller set to true. Found "true" in references '
                                       f"for {controller} and {current}"))
            else:
                controller = current
    return errs


def validate_finalizers(finalizers: list | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for name in finalizers or []:
        errs += _each(path, name, is_qualified_name(name))
    if "orphan" in (finalizers or []) and "foregroundDeletion" in (finalizers or []):
        errs.append(invalid_value(path, list(finalizers), "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def validate_object_meta(meta: dict, namespaced: bool, name_fn: NameFunc, path: str = "metadata") -> list[FieldError]:
    """ValidateObjectMeta: name (or generateName), namespace, labels, annotations, owners, finalizers."""
    errs: list[FieldError] = []
    generate_name = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate_name:
        errs += _each(path + ".generateName", generate_name, name_fn(generate_name, True))
    if not name:
        errs.append(required(path + ".name", "name or generateName is required"))
    else:
        errs += _each(path + ".name", name, name_fn(name, False))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            errs.append(required(path + ".namespace"))
        else:
            errs += _each(path + ".namespace", namespace, validate_namespace_name(namespace))
    elif namespace:
        errs.append(forbidden(path + ".namespace", "not allowed on this type"))
    errs += validate_nonnegative(meta.get("generation") or 0, path + ".generation")
    errs += validate_labels(meta.get("labels"), path + ".labels")
    errs += validate_annotations(meta.get("annotations"), path + ".annotations")
    errs += validate_owner_references(meta.get("ownerReferences"), path + ".ownerReferences")
    errs += validate_finalizers(meta.get("finalizers"), path + ".finalizers")
    return errs


def validate_object_meta_update(new: dict, old: dict, path: str = "metadata") -> list[FieldError]:
    """ValidateObjectMetaUpdate: identity fields are immutable; labels etc. stay valid."""
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        added = sorted(set(new.get("finalizers") or []) - set(old.get("finalizers") or []))
        if added:
            errs.append(forbidden(path + ".finalizers",
                                  "no new finalizers can be added if the object is being deleted, found new finalizers "
                                  + go_string_slice(added)))
    if (new.get("generation") or 0) < (old.get("generation") or 0):
        errs.append(invalid_value(path + ".generation", new.get("generation") or 0, "must not be decremented"))
    for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        errs += validate_immutable_field(new.get(key), old.get(key), f"{path}.{key}")
    errs += validate_labels(new.get("labels"), path + ".labels")
    errs += validate_annotations(new.get("annotations"), path + ".annotations")
    errs += validate_owner_references(new.get("ownerReferences"), path + ".ownerReferences")
    errs += validate_finalizers(new.get("finalizers"), path + ".finalizers")
    return errs


# ---------------------------------------------------------------- label selectors


def validate_label_selector(selector: dict | None, path: str) -> list[FieldError]:
    """metav1 ValidateLabelSelector: expressions' operators and values, then matchLabels."""
    if selector is None:
        return []
    errs: list[FieldError] = []
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        expr_path = f"{path}.matchExpressions[{i}]"
        operator = expr.get("operator", "")
        values = expr.get("values") or []
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(required(expr_path + ".values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(expr_path + ".values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid_value(expr_path + ".operator", operator, "not a valid selector operator"))
        errs += validate_label_name(expr.get("key", ""), expr_path + ".key")
        for value in values:
            errs += _each(expr_path + ".values", value, is_label_value(value))
    errs += validate_labels(selector.get("matchLabels"), path + ".matchLabels")
    return errs


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """Whether a LabelSelector matches labels. A nil selector matches nothing, an empty one everything."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selector_is_empty(selector: dict | None) -> bool:
    return selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions")
