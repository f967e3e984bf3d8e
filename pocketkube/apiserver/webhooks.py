"""Dynamic admission: the API server calls the webhooks of Mutating- and
ValidatingWebhookConfigurations, as kube-apiserver's MutatingAdmissionWebhook and
ValidatingAdmissionWebhook plugins do (k8s.io/apiserver pkg/admission/plugin/webhook).

For each create, update (patch and apply included, and their subresources) and delete:

- the webhooks whose `rules` (operations, apiGroups, apiVersions, resources with `*` and
  `res/sub` forms, scope), `namespaceSelector` (the namespace's labels; a Namespace's own)
  and `objectSelector` (the object's or the old object's labels) match (with `matchPolicy:
  Equivalent`, the default, a rule naming another served version of the resource matches too,
  and the object is sent in that version) are called with an `admission.k8s.io/v1`
  AdmissionReview, over HTTPS, verified with the `caBundle`: a
  `clientConfig.url`, or a `clientConfig.service` reached at its ClusterIP and checked as
  `NAME.NAMESPACE.svc` (the host routes the service range into the cluster);
- mutating webhooks run one after another, in the order of their configurations' names, and
  their `JSONPatch` answers are applied; with `reinvocationPolicy: IfNeeded` a webhook is
  called once more if a later one changed the object; validating webhooks run together after;
- an answer `allowed: false` refuses the request with the webhook's status (code 400 when it
  gives none) and the message `admission webhook "NAME" denied the request: ...`;
- a webhook that cannot be called within `timeoutSeconds`, whose certificate does not verify,
  or that answers something that is not a valid AdmissionReview for this request, is skipped
  with `failurePolicy: Ignore`, and refuses the request with 500 `failed calling webhook`
  under `Fail` (the default): one answer, never a retry loop;
- a dry run is refused for a webhook whose `sideEffects` is not None or NoneOnDryRun.

Webhook configurations themselves are never sent to webhooks (so a broken webhook can be
deleted). `matchConditions` are CEL expressions over `object`, `oldObject` and `request`
(celrules.py): a webhook is called only when all are true; one that cannot be evaluated is a
failure its failurePolicy decides. The configurations are read from the watch cache and re-read
when one changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
import uuid
from typing import Any

import aiohttp
import orjson

from pocketkube.apiserver import authn, celrules
from pocketkube.apiserver import patch as patching
from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.core import errors, selectors

log = logging.getLogger(__name__)

GROUP = "admissionregistration.k8s.io"
GROUP_PREFIX = f"/registry/{GROUP}/"
MUTATING_PREFIX = f"/registry/{GROUP}/mutatingwebhookconfigurations/"
VALIDATING_PREFIX = f"/registry/{GROUP}/validatingwebhookconfigurations/"
OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class _CallFailed(Exception):
    """Calling the webhook failed: the message after `failed calling webhook "NAME": `."""


class Dispatcher:
    def __init__(self, cache):
        self.cache = cache
        self._revision = -1
        self._mutating: list[dict] = []
        self._validating: list[dict] = []
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[str, ssl.SSLContext] = {}

    def _hooks(self) -> tuple[list[dict], list[dict]]:
        rev = self.cache.prefix_revision(GROUP_PREFIX)
        if rev != self._revision:
            self._revision = rev
            self._mutating = [h for c in self.cache.list(MUTATING_PREFIX) for h in c.get("webhooks") or []
                              if isinstance(h, dict)]
            self._validating = [h for c in self.cache.list(VALIDATING_PREFIX) for h in c.get("webhooks") or []
                                if isinstance(h, dict)]
        return self._mutating, self._validating

    def active(self) -> bool:
        mutating, validating = self._hooks()
        return bool(mutating or validating)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ---- matching ----------------------------------------------------------------------

    def _matches(self, hook: dict, operation: str, info: KindInfo, sub: str, namespace: str, obj: dict | None,
                 old: dict | None) -> KindInfo | None:
        return select(self.cache, hook, hook.get("rules") or [], operation, info, sub, namespace, obj, old)

    # ---- admission ---------------------------------------------------------------------

    async def admit(self, operation: str, info: KindInfo, sub: str, namespace: str, name: str, obj: dict | None,
                    old: dict | None, user: authn.UserInfo, dry_run: bool, options: dict | None = None) -> None:
        """Run the matching webhooks; mutates `obj` in place; raises APIError to refuse."""
        if info.group == GROUP:
            return
        mutating, validating = self._hooks()
        if not mutating and not validating:
            return
        base = {"operation": operation, "info": info, "sub": sub, "namespace": namespace, "name": name,
                "user": user, "dry_run": dry_run, "options": options}
        if operation != "DELETE" and obj is not None:
            selected = [(h, as_info) for h in mutating
                        if (as_info := self._matches(h, operation, info, sub, namespace, obj, old)) is not None
                        and _conditions_hold(h, obj, old, base)]
            await self._mutate(selected, obj, old, base)
        chosen = [(h, as_info) for h in validating
                  if (as_info := self._matches(h, operation, info, sub, namespace, obj, old)) is not None
                  and _conditions_hold(h, obj, old, base)]
        results = await asyncio.gather(*(self._call(h, as_info, obj, old, base) for h, as_info in chosen),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _mutate(self, hooks: list[tuple[dict, KindInfo]], obj: dict, old: dict | None, base: dict) -> None:
        changed_after: dict[int, bool] = {}
        for i, (hook, as_info) in enumerate(hooks):
            if await self._call(hook, as_info, obj, old, base, mutating=True):
                for j in range(i):
                    changed_after[j] = True
        again = [(h, a) for j, (h, a) in enumerate(hooks)
                 if changed_after.get(j) and h.get("reinvocationPolicy") == "IfNeeded"]
        for hook, as_info in again:
            await self._call(hook, as_info, obj, old, base, mutating=True)

    async def _call(self, hook: dict, as_info: KindInfo, obj: dict | None, old: dict | None, base: dict,
                    mutating: bool = False) -> bool:
        """Call one webhook; True if it changed `obj`. Refusals and Fail-policy failures raise."""
        name = hook.get("name", "")
        if base["dry_run"] and hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise errors.bad_request(f"admission webhook {errors.go_quote(name)} does not support dry run")
        info: KindInfo = base["info"]
        sent, sent_old = _convert(obj, info, as_info), _convert(old, info, as_info)
        request = _review_request(sent, sent_old, base, as_info)
        try:
            response = await self._post(hook, request)
        except _CallFailed as exc:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("failed calling webhook %r (failurePolicy Ignore): %s", name, exc)
                return False
            raise errors.internal(f"failed calling webhook {errors.go_quote(name)}: {exc}") from None
        if not response.get("allowed"):
            raise _denied(name, response.get("status"))
        if not mutating or not response.get("patch"):
            return False
        try:
            if response.get("patchType") != "JSONPatch":
                raise ValueError(f"unsupported patch type {response.get('patchType')!r}")
            ops = orjson.loads(base64.b64decode(response["patch"]))
            patched = patching.json_patch(sent, ops)
            if not isinstance(patched, dict):
                raise ValueError("the patch does not leave an object")
            patched = _convert(patched, as_info, info)
        except (ValueError, TypeError, orjson.JSONDecodeError, errors.APIError) as exc:
            msg = exc.message if isinstance(exc, errors.APIError) else str(exc)
            if hook.get("failurePolicy", "Fail") == "Ignore":
                log.warning("webhook %r sent a patch that does not apply (failurePolicy Ignore): %s", name, msg)
                return False
            raise errors.internal(f"failed calling webhook {errors.go_quote(name)}: {msg}") from None
        if patched == obj:
            return False
        obj.clear()
        obj.update(patched)
        return True

    async def _post(self, hook: dict, request: dict) -> dict:
        cfg = hook.get("clientConfig") or {}
        timeout = hook.get("timeoutSeconds") or 10
        if cfg.get("url"):
            url = cfg["url"]
            host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            target, server_name = url, host
        else:
            svc = cfg.get("service") or {}
            ns, svc_name = svc.get("namespace", ""), svc.get("name", "")
            path, port = svc.get("path") or "/", svc.get("port") or 443
            server_name = f"{svc_name}.{ns}.svc"
            url = f"https://{server_name}:{port}{path}"
            stored = self.cache.get(f"/registry/core/services/{ns}/{svc_name}")
            ip = ((stored or {}).get("spec") or {}).get("clusterIP")
            if stored is None or not ip or ip == "None":
                raise _CallFailed(f'failed to call webhook: service "{svc_name}" not found' if stored is None
                                  else f'failed to call webhook: service "{svc_name}" has no cluster IP')
            target = f"https://{ip}:{port}{path}"
        shown = f"{url}{'&' if '?' in url else '?'}timeout={timeout}s"
        body = orjson.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request})
        try:
            ctx = self._ssl_context(cfg.get("caBundle") or "")
        except (ValueError, ssl.SSLError) as exc:
            raise _CallFailed(f"failed to call webhook: could not use the caBundle: {exc}") from None
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            async with self._session.post(
                    target, data=body, params={"timeout": f"{timeout}s"},
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                    ssl=ctx, server_hostname=server_name,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise _CallFailed(f'failed to call webhook: Post "{shown}": context deadline exceeded') from None
        except aiohttp.ClientConnectorCertificateError as exc:
            why = getattr(exc.certificate_error, "verify_message", "") or str(exc.certificate_error)
            raise _CallFailed(f'failed to call webhook: Post "{shown}": tls: failed to verify certificate: '
                              f'x509: {why}') from None
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            raise _CallFailed(f'failed to call webhook: Post "{shown}": {_reason(exc)}') from None
        if status != 200:
            raise _CallFailed(f"failed to call webhook: the server responded with the status code {status} "
                              "but did not return more information")
        try:
            review = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _CallFailed(f"received invalid webhook response: {exc}") from None
        response = review.get("response") if isinstance(review, dict) else None
        if not isinstance(response, dict):
            raise _CallFailed("received invalid webhook response: webhook response was absent")
        if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
            raise _CallFailed(f"received invalid webhook response: expected webhook response of "
                              f"admission.k8s.io/v1, Kind=AdmissionReview, got {review.get('apiVersion')}, "
                              f"Kind={review.get('kind')}")
        if response.get("uid") != request["uid"]:
            raise _CallFailed(f"received invalid webhook response: expected response.uid="
                              f"{errors.go_quote(request['uid'])}, got {errors.go_quote(str(response.get('uid', '')))}")
        return response

    def _ssl_context(self, ca_bundle: str) -> ssl.SSLContext:
        key = hashlib.sha256(ca_bundle.encode()).hexdigest()
        ctx = self._ssl.get(key)
        if ctx is None:
            if ca_bundle:
                pem = base64.b64decode(ca_bundle).decode()
                ctx = ssl.create_default_context(cadata=pem)
            else:
                ctx = ssl.create_default_context()
            self._ssl[key] = ctx
        return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        if isinstance(inner, ConnectionRefusedError):
            return f"dial tcp {exc.host}:{exc.port}: connect: connection refused"
        if isinstance(inner, ssl.SSLError):
            return f"tls: {inner.reason or inner}"
        return f"dial tcp {exc.host}:{exc.port}: {inner.strerror or inner}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}"
    return str(exc) or exc.__class__.__name__


def select(cache, spec: dict, rules: list, operation: str, info: KindInfo, sub: str, namespace: str,
           obj: dict | None, old: dict | None) -> KindInfo | None:
    """The kind (version) a webhook or policy is called with, or None when its `rules` and
    `spec`'s namespaceSelector, objectSelector and matchPolicy do not select the request. With
    `matchPolicy: Equivalent` (the default) a rule naming another served version of the same
    resource selects it too, and the object is sent in that version."""
    rules = [r for r in rules if isinstance(r, dict)]
    chosen = info if any(_rule_matches(r, operation, info, sub) for r in rules) else None
    if chosen is None and spec.get("matchPolicy", "Equivalent") == "Equivalent":
        chosen = next((other for other in registry.ALL_KINDS
                       if other.group == info.group and other.resource == info.resource and other is not info
                       and any(_rule_matches(r, operation, other, sub) for r in rules)), None)
    if chosen is None:
        return None
    try:
        ns_sel = selectors.selector_from_object(spec.get("namespaceSelector") or {})
        obj_sel = selectors.selector_from_object(spec.get("objectSelector") or {})
    except ValueError:
        return None
    if info.kind == "Namespace" and info.group == "":
        if not ns_sel.matches(((obj or old or {}).get("metadata") or {}).get("labels") or {}):
            return None
    elif info.namespaced and not ns_sel.empty:
        ns = cache.get(f"/registry/core/namespaces/{namespace}")
        if not ns_sel.matches(((ns or {}).get("metadata") or {}).get("labels") or {}):
            return None
    if not obj_sel.empty:
        labels = [((o or {}).get("metadata") or {}).get("labels") or {} for o in (obj, old) if o is not None]
        if not any(obj_sel.matches(lbl) for lbl in labels):
            return None
    return chosen


def _rule_matches(rule: dict, operation: str, info: KindInfo, sub: str) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and info.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and info.version not in versions:
        return False
    scope = rule.get("scope") or "*"
    if scope == "Cluster" and info.namespaced or scope == "Namespaced" and not info.namespaced:
        return False
    for res in rule.get("resources") or []:
        r, _, s = res.partition("/")
        if (r == "*" or r == info.resource) and (s == "*" or s == sub):
            return True
    return False


def _denied(name: str, status: Any) -> errors.APIError:
    """webhookerrors.ToStatusErr."""
    status = status if isinstance(status, dict) else {}
    code = status.get("code") if isinstance(status.get("code"), int) else 0
    if code < 400:
        code = 400
    denied_by = f"admission webhook {errors.go_quote(name)} denied the request"
    if status.get("message"):
        message = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        message = f"{denied_by}: {status['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return errors.APIError(code, str(status.get("reason") or ""), message,
                           status.get("details") if isinstance(status.get("details"), dict) else None)


def cel_request(operation: str, info: KindInfo, sub: str, namespace: str, name: str, user: authn.UserInfo,
                dry_run: bool) -> dict:
    """The `request` variable of admission CEL expressions (an AdmissionRequest's fields)."""
    return {"kind": {"group": info.group, "version": info.version, "kind": info.kind},
            "resource": {"group": info.group, "version": info.version, "resource": info.resource},
            "subResource": sub, "name": name, "namespace": namespace, "operation": operation,
            "userInfo": user.to_api(), "dryRun": dry_run}


def _conditions_hold(hook: dict, obj: dict | None, old: dict | None, base: dict) -> bool:
    """Whether every matchCondition is true; an expression that cannot be evaluated refuses the
    request under failurePolicy Fail and skips the webhook under Ignore."""
    conditions = hook.get("matchConditions") or []
    if not conditions:
        return True
    activation = {"object": obj, "oldObject": old, "request": cel_request(
        base["operation"], base["info"], base["sub"], base["namespace"], base["name"], base["user"],
        base["dry_run"])}
    for cond in conditions:
        try:
            if not bool(celrules.evaluate(cond.get("expression", ""), activation)):
                return False
        except celrules.NotEvaluated as exc:
            if hook.get("failurePolicy", "Fail") == "Ignore":
                return False
            raise errors.internal(f"failed calling webhook {errors.go_quote(hook.get('name', ''))}: failed to "
                                  f"evaluate match condition: {exc}") from None
    return True


def _convert(obj: dict | None, source: KindInfo, target: KindInfo) -> dict | None:
    """An object of one version of a resource in another, through the storage form."""
    if obj is None or source is target:
        return obj
    stored = source.strategy.to_storage(obj) if source.storage_group is not None else obj
    return target.strategy.from_storage(stored) if target.storage_group is not None else stored


def _review_request(obj: dict | None, old: dict | None, base: dict, as_info: KindInfo) -> dict:
    info: KindInfo = base["info"]
    gvk = {"group": as_info.group, "version": as_info.version, "kind": as_info.kind}
    gvr = {"group": as_info.group, "version": as_info.version, "resource": as_info.resource}
    request_gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    request_gvr = {"group": info.group, "version": info.version, "resource": info.resource}
    req: dict = {"uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": request_gvk,
                 "requestResource": request_gvr,
                 "name": base["name"], "operation": base["operation"], "userInfo": base["user"].to_api(),
                 "object": obj, "oldObject": old, "dryRun": base["dry_run"],
                 "options": {"kind": OPTIONS_KIND.get(base["operation"], "CreateOptions"),
                             "apiVersion": "meta.k8s.io/v1", **(base["options"] or {})}}
    if base["sub"]:
        req["subResource"] = base["sub"]
        req["requestSubResource"] = base["sub"]
    if info.namespaced:
        req["namespace"] = base["namespace"]
    return req
