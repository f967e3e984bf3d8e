"""The garbage collector (kube-controller-manager's "garbage-collector-controller").

Owns ownerReferences-based deletion across every kind pocketkube serves:
- background: a dependent whose owners are all gone is deleted (also one created after its
  owner was deleted: an ownerReference to a uid that no longer exists is dangling);
- foreground: an owner with deletionTimestamp and the `foregroundDeletion` finalizer has its
  dependents deleted, and loses the finalizer (and so goes) once no dependent that blocks
  owner deletion is left;
- orphan: an owner with deletionTimestamp and the `orphan` finalizer has its ownerReference
  removed from every dependent, then loses the finalizer.

The object graph (uid -> object, owner uid -> dependent uids) is built from shared
informers; before deleting or patching, the collector reads the latest object and looks
owners up through the API, as the real one does, so a lagging informer never makes it
delete something that still has an owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.controllers.base import Controller
from pocketkube.core import errors
from pocketkube.core.informer import Informer, object_key, split_key

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@dataclass(frozen=True)
class KindRef:
    api_version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


# Every kind that can be an owner or a dependent (events are neither in practice).
KINDS = [
    KindRef("v1", "pods", "Pod", True),
    KindRef("v1", "services", "Service", True),
    KindRef("v1", "endpoints", "Endpoints", True),
    KindRef("v1", "configmaps", "ConfigMap", True),
    KindRef("v1", "secrets", "Secret", True),
    KindRef("v1", "serviceaccounts", "ServiceAccount", True),
    KindRef("v1", "nodes", "Node", False),
    KindRef("v1", "replicationcontrollers", "ReplicationController", True),
    KindRef("apps/v1", "deployments", "Deployment", True),
    KindRef("apps/v1", "replicasets", "ReplicaSet", True),
    KindRef("apps/v1", "statefulsets", "StatefulSet", True),
    KindRef("apps/v1", "daemonsets", "DaemonSet", True),
    KindRef("batch/v1", "jobs", "Job", True),
    KindRef("batch/v1", "cronjobs", "CronJob", True),
    KindRef("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    KindRef("networking.k8s.io/v1", "ingresses", "Ingress", True),
    KindRef("networking.k8s.io/v1", "ingressclasses", "IngressClass", False),
    KindRef("coordination.k8s.io/v1", "leases", "Lease", True),
]
_BY_GROUP_KIND = {(k.group, k.kind): k for k in KINDS}


def kind_for_reference(ref: dict) -> KindRef | None:
    """The served kind an ownerReference names (any version of its group)."""
    group = (ref.get("apiVersion") or "").rpartition("/")[0]
    return _BY_GROUP_KIND.get((group, ref.get("kind", "")))


def is_deleting_dependents(obj: dict) -> bool:
    m = obj.get("metadata") or {}
    return bool(m.get("deletionTimestamp")) and FOREGROUND in (m.get("finalizers") or [])


def is_orphaning(obj: dict) -> bool:
    m = obj.get("metadata") or {}
    return bool(m.get("deletionTimestamp")) and ORPHAN in (m.get("finalizers") or [])


# ---------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------

def classify_references(refs: list[dict], owners: dict[str, dict | None]) -> tuple[list, list, list]:
    """classifyReferences: (solid, dangling, waiting). `owners` maps a reference's uid to the
    owner as the API has it now (None: absent, or a different object under that name)."""
    solid, dangling, waiting = [], [], []
    for ref in refs:
        owner = owners.get(ref.get("uid"))
        if owner is None:
            dangling.append(ref)
        elif is_deleting_dependents(owner):
            waiting.append(ref)
        else:
            solid.append(ref)
    return solid, dangling, waiting


@dataclass(frozen=True)
class Action:
    """What to do with a dependent: nothing, drop some ownerReferences, or delete it."""

    kind: str  # "none" | "remove-refs" | "delete"
    remove_uids: tuple[str, ...] = ()
    propagation: str = ""


def decide(obj: dict, solid: list, dangling: list, waiting: list, has_dependents: bool) -> Action:
    """attemptToDeleteItem's decision for a dependent whose references are classified."""
    if not dangling and not waiting:
        return Action("none")
    if solid:
        return Action("remove-refs", tuple(r["uid"] for r in dangling + waiting))
    if waiting and has_dependents:
        return Action("delete", propagation="Foreground")
    finalizers = (obj.get("metadata") or {}).get("finalizers") or []
    if ORPHAN in finalizers:
        return Action("delete", propagation="Orphan")
    if FOREGROUND in finalizers:
        return Action("delete", propagation="Foreground")
    return Action("delete", propagation="Background")


def blocks_owner(dependent: dict, owner_uid: str) -> bool:
    return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
               for r in (dependent.get("metadata") or {}).get("ownerReferences") or [])


# ---------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------

class GarbageCollector(Controller):
    name = "garbage-collector-controller"
    service_account = "generic-garbage-collector"
    workers = 4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nodes: dict[str, tuple[KindRef, str]] = {}  # uid -> (kind, informer key)
        self.owners_of: dict[str, set[str]] = {}  # uid -> owner uids
        self.dependents_of: dict[str, set[str]] = {}  # owner uid -> dependent uids
        self.absent_owners: set[str] = set()
        self.informer_of: dict[KindRef, Informer] = {}

    def setup(self) -> None:
        for kind in KINDS:
            informer = self.informers.informer(kind.api_version, kind.resource)
            self.informer_of[kind] = informer
            informer.add_handlers(lambda obj, k=kind: self._added(k, obj),
                                  lambda old, new, k=kind: self._updated(k, old, new),
                                  lambda obj, k=kind: self._deleted(obj))

    # ---- the graph -----------------------------------------------------------------

    def _index(self, kind: KindRef, obj: dict) -> tuple[set[str], set[str]]:
        """Records obj; returns (owner uids added, owner uids removed)."""
        m = obj["metadata"]
        uid = m["uid"]
        self.nodes[uid] = (kind, object_key(obj))
        new = {r["uid"] for r in m.get("ownerReferences") or [] if r.get("uid")}
        old = self.owners_of.get(uid, set())
        for owner in old - new:
            self._unlink(owner, uid)
        for owner in new - old:
            self.dependents_of.setdefault(owner, set()).add(uid)
        if new:
            self.owners_of[uid] = new
        else:
            self.owners_of.pop(uid, None)
        return new - old, old - new

    def _unlink(self, owner: str, dependent: str) -> None:
        deps = self.dependents_of.get(owner)
        if deps is not None:
            deps.discard(dependent)
            if not deps:
                del self.dependents_of[owner]

    def _added(self, kind: KindRef, obj: dict) -> None:
        added, _ = self._index(kind, obj)
        uid = obj["metadata"]["uid"]
        if is_deleting_dependents(obj) or is_orphaning(obj) or any(o not in self.nodes for o in added):
            self.enqueue(uid)

    def _updated(self, kind: KindRef, old: dict, new: dict) -> None:
        added, removed = self._index(kind, new)
        uid = new["metadata"]["uid"]
        if is_deleting_dependents(new) and not is_deleting_dependents(old):
            for dep in self.dependents_of.get(uid, ()):
                self.enqueue(dep)
        if is_deleting_dependents(new) or is_orphaning(new) or any(o not in self.nodes for o in added):
            self.enqueue(uid)
        for owner in removed:
            self._enqueue_if_waiting(owner)

    def _deleted(self, obj: dict) -> None:
        m = obj.get("metadata") or {}
        uid = m.get("uid")
        if not uid:
            return
        self.nodes.pop(uid, None)
        self.absent_owners.add(uid)
        if len(self.absent_owners) > 100_000:
            self.absent_owners.clear()
        for owner in self.owners_of.pop(uid, set()):
            self._unlink(owner, uid)
            self._enqueue_if_waiting(owner)
        for dep in self.dependents_of.get(uid, set()):
            self.enqueue(dep)

    def _enqueue_if_waiting(self, owner_uid: str) -> None:
        owner = self._cached(owner_uid)
        if owner is not None and is_deleting_dependents(owner):
            self.enqueue(owner_uid)

    def _cached(self, uid: str) -> dict | None:
        entry = self.nodes.get(uid)
        if entry is None:
            return None
        obj = self.informer_of[entry[0]].get(entry[1])
        return obj if obj is not None and obj["metadata"].get("uid") == uid else None

    # ---- sync ----------------------------------------------------------------------

    async def sync(self, uid: str) -> None:
        entry = self.nodes.get(uid)
        if entry is None:
            return
        kind, key = entry
        obj = await self._get_latest(kind, key, uid)
        if obj is None:
            return
        m = obj["metadata"]
        if m.get("deletionTimestamp"):
            if ORPHAN in (m.get("finalizers") or []):
                await self._orphan_dependents(kind, obj)
            elif FOREGROUND in (m.get("finalizers") or []):
                await self._process_deleting_dependents(kind, obj)
            return
        refs = m.get("ownerReferences") or []
        if not refs:
            return
        owners = {ref["uid"]: await self._live_owner(ref, obj, kind) for ref in refs if ref.get("uid")}
        solid, dangling, waiting = classify_references(refs, owners)
        action = decide(obj, solid, dangling, waiting, bool(self.dependents_of.get(uid)))
        if action.kind == "remove-refs":
            await self._remove_owner_refs(kind, obj, set(action.remove_uids))
        elif action.kind == "delete":
            await self._delete(kind, obj, action.propagation)

    async def _get_latest(self, kind: KindRef, key: str, uid: str) -> dict | None:
        ns, name = split_key(key)
        try:
            obj = await self.client.get(kind.api_version, kind.resource, name, namespace=ns)
        except errors.APIError as exc:
            if exc.code == 404:
                return None
            raise
        return obj if obj["metadata"].get("uid") == uid else None

    async def _live_owner(self, ref: dict, dependent: dict, dependent_kind: KindRef) -> dict | None:
        """isDangling: the owner as the API has it, None if it is gone (or replaced by an
        object with another uid). An owner of a kind we do not serve counts as present."""
        uid = ref["uid"]
        if uid in self.absent_owners:
            return None
        kind = kind_for_reference(ref)
        if kind is None:
            return {"metadata": {"uid": uid}}
        if kind.namespaced and not dependent_kind.namespaced:
            return None  # a cluster-scoped object cannot have a namespaced owner
        namespace = dependent["metadata"].get("namespace") if kind.namespaced else None
        try:
            owner = await self.client.get(kind.api_version, kind.resource, ref.get("name", ""), namespace=namespace)
        except errors.APIError as exc:
            if exc.code == 404:
                self.absent_owners.add(uid)
                return None
            raise
        if owner["metadata"].get("uid") != uid:
            self.absent_owners.add(uid)
            return None
        return owner

    async def _delete(self, kind: KindRef, obj: dict, propagation: str) -> None:
        m = obj["metadata"]
        try:
            await self.client.delete(kind.api_version, kind.resource, m["name"], namespace=m.get("namespace"),
                                     propagation_policy=propagation, preconditions={"uid": m["uid"]})
        except errors.APIError as exc:
            if exc.code not in (404, 409):
                raise

    async def _remove_owner_refs(self, kind: KindRef, obj: dict, owner_uids: set[str]) -> None:
        """Drop the ownerReferences to owner_uids."""
        await self._drop_from_metadata_list(kind, obj, "ownerReferences", lambda r: r.get("uid") in owner_uids)

    async def _remove_finalizer(self, kind: KindRef, obj: dict, finalizer: str) -> None:
        await self._drop_from_metadata_list(kind, obj, "finalizers", lambda f: f == finalizer)

    async def _drop_from_metadata_list(self, kind: KindRef, obj: dict, field: str, drop) -> None:
        """Remove the items of metadata.<field> that `drop` selects, guarded by the
        resourceVersion read; on a conflict read the latest object and try again."""
        m = obj["metadata"]
        for _ in range(5):
            kept = [item for item in m.get(field) or [] if not drop(item)]
            if len(kept) == len(m.get(field) or []):
                return
            patch = {"metadata": {field: kept or None, "resourceVersion": m["resourceVersion"]}}
            try:
                await self.client.patch(kind.api_version, kind.resource, m["name"], patch,
                                        namespace=m.get("namespace"))
                return
            except errors.APIError as exc:
                if exc.code == 404:
                    return
                if exc.code != 409:
                    raise
            obj = await self._get_latest(kind, object_key(obj), m["uid"])
            if obj is None:
                return
            m = obj["metadata"]
        raise errors.conflict(kind.resource, kind.group, m["name"], f"{field} kept changing")

    async def _orphan_dependents(self, kind: KindRef, owner: dict) -> None:
        uid = owner["metadata"]["uid"]
        for dep_uid in list(self.dependents_of.get(uid, ())):
            entry = self.nodes.get(dep_uid)
            if entry is None:
                continue
            dep = await self._get_latest(entry[0], entry[1], dep_uid)
            if dep is not None:
                await self._remove_owner_refs(entry[0], dep, {uid})
        await self._remove_finalizer(kind, owner, ORPHAN)

    async def _process_deleting_dependents(self, kind: KindRef, owner: dict) -> None:
        """Foreground: the finalizer goes once no dependent blocks the owner's deletion;
        until then the blocking dependents are (re)considered for deletion."""
        uid = owner["metadata"]["uid"]
        blocking = []
        for dep_uid in self.dependents_of.get(uid, ()):
            dep = self._cached(dep_uid)
            if dep is not None and blocks_owner(dep, uid):
                blocking.append(dep)
        if not blocking:
            await self._remove_finalizer(kind, owner, FOREGROUND)
            return
        for dep in blocking:
            if not is_deleting_dependents(dep):
                self.enqueue(dep["metadata"]["uid"])
