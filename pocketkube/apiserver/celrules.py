"""CEL validation rules of CRD schemas (`x-kubernetes-validations`), evaluated with cel-python
(docs/adr/0010 says why that library).

A rule sees the value of its schema node as `self` and, on an update, the old value as
`oldSelf` (a rule that names `oldSelf` is a transition rule: it is checked only when there is an
old value, unless `optionalOldSelf`). When it is false the field gets the error kube-apiserver
gives: `Invalid value: "<type>": <message>` (or Required / Forbidden / Duplicate for the
rule's `reason`), at the node's path plus the rule's `fieldPath`; without a `message`,
`failed rule: <rule>`. Rules are compiled once and kept.

cel-python has standard CEL; Kubernetes adds libraries. The strings extension (`split`, `join`,
`lowerAscii`, `upperAscii`, `replace`, `indexOf`, `lastIndexOf`, `substring`, `trim`, `charAt`)
and `isIP` / `isCIDR` are added here (the Gateway API's rules use `split`). A rule that calls
another Kubernetes function (`url`, `quantity`, `ip`, `format`, ...) is skipped rather than
refusing every object: the log says which.
"""

from __future__ import annotations

import logging
from typing import Any

from pocketkube.core import errors
from pocketkube.core.errors import FieldError

log = logging.getLogger(__name__)

_PROGRAMS: dict[str, Any] = {}  # rule -> program, or None when it does not compile
_REPORTED: set[str] = set()
_env = None
_functions: dict = {}


def _extensions() -> dict:
    """Kubernetes' CEL libraries that cel-python lacks: the strings extension, isIP, isCIDR."""
    import ipaddress

    from celpy import celtypes

    S, L, I, B = celtypes.StringType, celtypes.ListType, celtypes.IntType, celtypes.BoolType

    def split(s, sep, n=None):
        n = -1 if n is None else int(n)
        if n == 0:
            return L([])
        parts = str(s).split(str(sep)) if n < 0 else str(s).split(str(sep), n - 1)
        return L([S(p) for p in parts])

    def substring(s, start, end=None):
        return S(str(s)[int(start):] if end is None else str(s)[int(start):int(end)])

    def is_ip(s):
        try:
            ipaddress.ip_address(str(s))
            return B(True)
        except ValueError:
            return B(False)

    def is_cidr(s):
        try:
            ipaddress.ip_network(str(s), strict=False)
            return B("/" in str(s))
        except ValueError:
            return B(False)

    return {
        "split": split, "substring": substring, "isIP": is_ip, "isCIDR": is_cidr,
        "join": lambda items, sep=S(""): S(str(sep).join(str(i) for i in items)),
        "lowerAscii": lambda s: S(str(s).lower()), "upperAscii": lambda s: S(str(s).upper()),
        "replace": lambda s, old, new, n=None: S(str(s).replace(str(old), str(new), -1 if n is None else int(n))),
        "indexOf": lambda s, sub, start=I(0): I(str(s).find(str(sub), int(start))),
        "lastIndexOf": lambda s, sub: I(str(s).rfind(str(sub))),
        "trim": lambda s: S(str(s).strip()), "charAt": lambda s, i: S(str(s)[int(i):int(i) + 1]),
    }


def _program(rule: str):
    global _env, _functions
    if rule in _PROGRAMS:
        return _PROGRAMS[rule]
    try:
        import celpy

        if _env is None:
            _env = celpy.Environment()
            _functions = _extensions()
        prog = _env.program(_env.compile(rule), functions=_functions)
    except Exception as exc:  # celpy raises its own parse errors; any failure means: cannot check
        _report(rule, f"does not compile here: {exc}")
        prog = None
    _PROGRAMS[rule] = prog
    return prog


def _report(rule: str, why: str) -> None:
    if rule not in _REPORTED:
        _REPORTED.add(rule)
        log.warning("CEL rule %r is not checked: %s", rule, why)


class NotEvaluated(Exception):
    """The expression could not be compiled or evaluated here (the reason is logged)."""


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    """The value of a CEL expression over JSON-like variables (dicts become CEL maps);
    raises NotEvaluated when it cannot be compiled or evaluated."""
    try:
        import celpy
    except ImportError:
        raise NotEvaluated("cel-python is not installed") from None
    prog = _program(expression)
    if prog is None:
        raise NotEvaluated("does not compile")
    try:
        result = prog.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    except Exception as exc:
        _report(expression, f"evaluation failed: {exc}")
        raise NotEvaluated(str(exc)) from None
    if isinstance(result, Exception):
        _report(expression, f"evaluation failed: {result}")
        raise NotEvaluated(str(result))
    return result


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check(rules: list, value: Any, path: str, old: Any = None, has_old: bool = False) -> list[FieldError]:
    """The errors of the rules `value` breaks."""
    try:
        import celpy
    except ImportError:  # the lock installs cel-python; without it, rules cannot be checked
        _report("*", "cel-python is not installed")
        return []

    errs: list[FieldError] = []
    for r in rules:
        if not isinstance(r, dict) or not isinstance(r.get("rule"), str):
            continue
        rule = r["rule"]
        transition = "oldSelf" in rule
        if transition and not has_old and not r.get("optionalOldSelf"):
            continue
        prog = _program(rule)
        if prog is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old) if has_old else None
        try:
            result = prog.evaluate(activation)
        except Exception as exc:
            _report(rule, f"evaluation failed: {exc}")
            continue
        if isinstance(result, Exception):
            _report(rule, f"evaluation failed: {result}")
            continue
        if bool(result):
            continue
        message = r.get("message") or f"failed rule: {rule}"
        where = path + (r.get("fieldPath") or "")
        reason = r.get("reason") or "FieldValueInvalid"
        if reason == "FieldValueRequired":
            errs.append(errors.required(where, message))
        elif reason == "FieldValueForbidden":
            errs.append(errors.forbidden(where, message))
        elif reason == "FieldValueDuplicate":
            errs.append(errors.duplicate(where, _type_name(value)))
        else:
            errs.append(errors.invalid_value(where, _type_name(value), message))
    return errs
