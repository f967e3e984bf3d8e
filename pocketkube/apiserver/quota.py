"""ResourceQuota admission: a create that would take its namespace past a quota is refused,
as kube's ResourceQuota admission plugin refuses it:

    403 Forbidden  pods "web-x7k2p" is forbidden: exceeded quota: compute, requested: pods=1,
                   used: pods=2, limited: pods=2

`install(storage)` adds it to the storage's reservations (they run without awaiting, so two
creates at once cannot both take the last unit). The limits are each quota's status.hard, as
the resource quota controller last wrote it (a quota it has not synced yet holds nothing
back, as upstream); the usage is counted from the watch cache, plus the creates admitted
that the cache does not show yet. What a resource name counts is core/quota.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from pocketkube.apiserver.kinds import registry
from pocketkube.apiserver.kinds.base import KindInfo
from pocketkube.apiserver.storage import Storage, collection_prefix
from pocketkube.core import errors, quota


@dataclass(eq=False)
class _Admitted:
    info: KindInfo
    namespace: str
    obj: dict  # the object being created: its resourceVersion is set once it is stored


class QuotaAdmission:
    def __init__(self, storage: Storage):
        self.storage = storage
        self._quotas = registry.by_resource("", "v1", "resourcequotas")
        self._admitted: list[_Admitted] = []

    def begin(self, operation: str, info: KindInfo, obj: dict, old: dict | None,
              dry_run: bool) -> Callable[[bool], None] | None:
        if operation != "CREATE" or not info.namespaced:
            return None
        m = obj.get("metadata") or {}
        namespace = m.get("namespace", "")
        quotas = self.storage.cache.list(collection_prefix(self._quotas, namespace))
        if not quotas:
            return None
        self._forget_cached()
        charged = False
        for q in quotas:
            names = [n for n in (q.get("status") or {}).get("hard") or {} if quota.counted(n) == (info.group, info.resource)]
            requested = {n: amount for n in names if (amount := quota.usage(n, obj))}
            if not requested:
                continue
            charged = True
            limits = quota.hard_limits(q, requested)
            used = {n: self._used(n, info, namespace) for n in requested}
            exceeded = sorted(n for n in requested if n in limits and used[n] + requested[n] > limits[n])
            if exceeded:
                hard = q["status"]["hard"]
                raise errors.forbidden_object(
                    info.resource, info.group, m.get("name", ""),
                    f"exceeded quota: {q['metadata']['name']}, "
                    f"requested: {quota.pretty({n: requested[n] for n in exceeded})}, "
                    f"used: {quota.pretty({n: used[n] for n in exceeded})}, "
                    f"limited: {quota.pretty({n: hard[n] for n in exceeded})}")
        if not charged:
            return None
        entry = _Admitted(info, namespace, obj)
        self._admitted.append(entry)

        def finish(stored: bool) -> None:
            if not stored or dry_run:
                self._admitted.remove(entry)
        return finish

    def _used(self, name: str, info: KindInfo, namespace: str) -> Fraction:
        objects = self.storage.cache.list(collection_prefix(info, namespace))
        in_flight = [a.obj for a in self._admitted if a.info is info and a.namespace == namespace]
        return Fraction(quota.total(name, objects) + quota.total(name, in_flight))

    def _forget_cached(self) -> None:
        """Drop the admitted creates the watch cache has caught up with (it counts them now)."""
        revision = self.storage.cache.revision
        self._admitted = [a for a in self._admitted
                          if not (rv := (a.obj.get("metadata") or {}).get("resourceVersion")) or int(rv) > revision]


def install(storage: Storage) -> QuotaAdmission:
    admission = QuotaAdmission(storage)
    storage.reservations.append(admission.begin)
    return admission
