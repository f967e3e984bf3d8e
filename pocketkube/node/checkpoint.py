"""A pod's checkpoint on the node: pods/<uid>/state.json, what a restarted agent needs to report
the pod's status again and adopt what still runs (the pod's name and uid, its start time, IP,
terminal phase and conditions; per container its restart count, instances, last terminated
state, environment and, while it runs, its process record: runtime.ContainerRecord). Written
atomically (0600: it holds the containers' environment); the pod worker says what goes in it.
"""

from __future__ import annotations

import json
import os

from pocketkube.core.linux import write_atomic

STATE_FILE = "state.json"


def save(pod_dir: str, state: dict) -> None:
    os.makedirs(pod_dir, exist_ok=True)
    write_atomic(os.path.join(pod_dir, STATE_FILE), json.dumps(state).encode(), mode=0o600)


def load(pod_dir: str) -> dict | None:
    """The saved state, None if there is none (or it cannot be read)."""
    try:
        with open(os.path.join(pod_dir, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def container_records(state: dict | None) -> list[dict]:
    """The process records of the containers that ran when the state was saved."""
    return [saved["record"] for saved in ((state or {}).get("containers") or {}).values() if saved.get("record")]
