"""What the API server needs to know about one kind, and the generic strategy.

A `KindInfo` names the kind (group, version, resource, short names, scope,
subresources) and carries its strategy: a class with the hooks the generic registry
calls around every write, as Kubernetes' `pkg/registry/*/strategy.go` do:

- `default(obj)`: fill defaults in place (SetDefaults_* of k8s.io/kubernetes
  pkg/apis/*/v1/defaults.go). Runs on create, update and patch results.
- `prepare_for_create(obj)` / `prepare_for_update(obj, old)`: drop what a user may not
  set (status on create for kinds with a status subresource, status on update of the
  main resource), and set `metadata.generation`.
- `validate(obj)` -> list[FieldError]: validation of a new object.
- `validate_update(obj, old)` -> list[FieldError]: validation of an update, immutable
  fields included; by default validate(obj).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocketkube.core.errors import FieldError


class Strategy:
    """Generic behaviour; kind modules subclass it and override what differs."""

    # Kinds whose status may only be written through /status (k8s: a status subresource).
    has_status_subresource: bool = False
    # Which top-level fields count as "spec" for generation: a change bumps generation.
    generation_fields: tuple[str, ...] = ("spec",)
    # Whether metadata.generation is kept at all (Kubernetes sets it for every object).
    tracks_generation: bool = True
    # The propagation policy of a DELETE that names none (DefaultGarbageCollectionPolicy).
    default_gc_policy: str | None = None

    def default(self, obj: dict) -> None:
        pass

    def prepare_for_create(self, obj: dict) -> None:
        if self.has_status_subresource and "status" in obj:
            obj["status"] = self.initial_status(obj)
        if self.tracks_generation:
            obj["metadata"]["generation"] = 1

    def initial_status(self, obj: dict) -> Any:
        return {}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        if self.has_status_subresource:
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
        if self.tracks_generation:
            gen = old.get("metadata", {}).get("generation", 1) or 1
            if any(obj.get(f) != old.get(f) for f in self.generation_fields):
                gen += 1
            obj["metadata"]["generation"] = gen

    def prepare_for_status_update(self, obj: dict, old: dict) -> None:
        """A write to /status keeps everything but status (and metadata the write carries)."""
        for key in list(obj.keys()):
            if key not in ("apiVersion", "kind", "metadata", "status"):
                del obj[key]
        for key, value in old.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                obj[key] = value
        if "generation" in old.get("metadata", {}):
            obj["metadata"]["generation"] = old["metadata"]["generation"]

    def validate(self, obj: dict) -> list[FieldError]:
        return []

    # Kinds served in one form and stored in another (events.k8s.io/v1 Event is stored as
    # core/v1 Event, as Kubernetes stores one list for both) convert here.
    def to_storage(self, obj: dict) -> dict:
        return obj

    def from_storage(self, obj: dict) -> dict:
        return obj

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return self.validate(obj)


@dataclass(frozen=True)
class KindInfo:
    group: str  # "" for core
    version: str
    kind: str
    resource: str  # plural, lower case: "services"
    singular: str
    namespaced: bool
    strategy: Strategy = field(default_factory=Strategy)
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Subresources beyond the main resource: "status", "scale", "log", "exec", ...
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    # The group whose storage holds these objects, when not its own (see Strategy.to_storage).
    storage_group: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"
