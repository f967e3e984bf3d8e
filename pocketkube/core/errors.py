"""API errors as Kubernetes reports them: metav1.Status bodies and field.Error causes.

Every failure the API server returns goes through `APIError`, so the HTTP code, the
`reason` and the message text stay the ones kubectl knows how to print. Field-level
validation problems are `FieldError`s; `invalid()` aggregates them into the 422 Status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# field.ErrorType -> (cause reason, text in the message)
_FIELD_ERROR_TYPES = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "Internal": ("InternalError", "Internal error"),
    "TypeInvalid": ("FieldValueTypeInvalid", "Invalid value"),
}
# Types whose message never shows the bad value (apimachinery field.Error.ErrorBody).
_NO_VALUE_TYPES = {"Required", "Forbidden", "TooLong", "Internal"}
OMIT = object()  # a bad value that must not be printed


def _go_value(value: Any) -> str:
    """Render a bad value the way ErrorBody does: strings %q, numbers and bools bare."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, (list, tuple)):
        return "[]string{" + ", ".join(go_quote(str(v)) for v in value) + "}"
    if isinstance(value, dict):
        return _go_interface(value)
    return go_quote(str(value))


def _go_interface(value: Any) -> str:
    """%#v of an unstructured JSON value (a custom resource's): map keys sorted, as Go prints them."""
    if isinstance(value, dict):
        return "map[string]interface {}{" + ", ".join(
            f"{go_quote(str(k))}:{_go_interface(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_interface(v) for v in value) + "}"
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    return str(value)


def go_quote(s: str) -> str:
    """Go's %q for the strings we print (printable ASCII kept, the rest escaped)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass
class FieldError:
    """One cause of an Invalid error: a field path, a type and what was wrong."""

    type: str
    field: str
    bad_value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        text = _FIELD_ERROR_TYPES[self.type][1]
        if self.type not in _NO_VALUE_TYPES and self.bad_value is not OMIT:
            text = f"{text}: {_go_value(self.bad_value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict:
        return {"reason": _FIELD_ERROR_TYPES[self.type][0], "message": self.body(), "field": self.field}


# Constructors named as in apimachinery's field package.
def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, OMIT, detail)


def invalid_value(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid", path, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(go_quote(s) for s in supported) if supported else ""
    return FieldError("NotSupported", path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate", path, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, OMIT, detail)


def too_long(path: str, value: Any, max_length: int) -> FieldError:
    return FieldError("TooLong", path, value, f"may not be more than {max_length} bytes")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError("TooMany", path, actual, f"must have at most {max_items} items")


def not_found_field(path: str, value: Any) -> FieldError:
    return FieldError("NotFound", path, value)


class APIError(Exception):
    """An error the API answers with a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 list_meta: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_meta = list_meta  # the Status's metadata (a ListMeta: "continue" of a 410 list)

    def status(self) -> dict:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta or {}),
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


NAMESPACE_TERMINATING = "NamespaceTerminating"  # the cause of a create refused in a closing namespace


def namespace_terminating(exc: APIError) -> bool:
    """apierrors.HasStatusCause(err, NamespaceTerminatingCause): the create was refused because
    its namespace is being deleted (a controller drops the work instead of retrying)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return exc.code == 403 and any(c.get("reason") == NAMESPACE_TERMINATING for c in details.get("causes") or [])


def _details(name: str, resource: str, group: str) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def qualified(resource: str, group: str) -> str:
    """`services`, `deployments.apps`: the resource as error messages name it."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                    _details(name, resource, group))


def already_exists(resource: str, group: str, name: str) -> APIError:
    return APIError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                    _details(name, resource, group))


def conflict(resource: str, group: str, name: str, why: str) -> APIError:
    return APIError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
                    _details(name, resource, group))


OPTIMISTIC_LOCK_MSG = "the object has been modified; please apply your changes to the latest version and try again"


def stale(resource: str, group: str, name: str) -> APIError:
    return conflict(resource, group, name, OPTIMISTIC_LOCK_MSG)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> APIError:
    """The 422 Invalid Status: `Kind.group "name" is invalid: <causes>`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        agg = str(errors[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errors) + "]"
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errors]
    return APIError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {agg}', details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed(action: str, resource: str) -> APIError:
    return APIError(405, "MethodNotAllowed", f'{action} is not supported on resources of kind "{resource}"')


def expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def gone(message: str) -> APIError:
    return APIError(410, "Gone", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden_status(message: str) -> APIError:
    return APIError(403, "Forbidden", message)


def forbidden_object(resource: str, group: str, name: str, why: str) -> APIError:
    """apierrors.NewForbidden: `pods "web-1" is forbidden: <why>` (an admission plugin's refusal)."""
    return APIError(403, "Forbidden", f'{qualified(resource, group)} "{name}" is forbidden: {why}',
                    _details(name, resource, group))


def not_found_path() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def unsupported_media_type(content_type: str, accepted: list[str]) -> APIError:
    return APIError(415, "UnsupportedMediaType",
                    'the body of the request was in an unknown format - accepted media types include: '
                    + ", ".join(accepted))


def not_acceptable(accepted: list[str]) -> APIError:
    return APIError(406, "NotAcceptable",
                    "only the following media types are accepted: " + ", ".join(accepted))


def too_large(message: str = "Request entity too large: limit is 3145728") -> APIError:
    return APIError(413, "RequestEntityTooLarge", message)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str) -> APIError:
    return APIError(504, "Timeout", message)
