"""requirements.lock agrees with pyproject.toml, and the set-up venv holds exactly the lock.

A fresh clone must install what CI tested: `scripts/setup` installs requirements.lock (exact
versions, hashes) and nothing else. These checks fail, naming the command that fixes it, when
pyproject.toml changed without the lock, or when the running venv drifted from it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
REFRESH = "run `scripts/lock` (then `scripts/setup`) and commit requirements.lock"


def locked() -> dict[str, dict]:
    """name -> {"version", "hashes", "via"} from pip-compile's output."""
    entries: dict[str, dict] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)", line):
            current = entries.setdefault(canonicalize_name(m.group(1)),
                                         {"version": m.group(2), "hashes": [], "via": []})
        elif current is not None and (m := re.search(r"--hash=(sha256:[0-9a-f]{64})", line)):
            current["hashes"].append(m.group(1))
        elif current is not None and (m := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)):
            current["via"].append(m.group(1).strip())
    return entries


def declared() -> list[Requirement]:
    """What pyproject.toml asks for: dependencies, the test extra, the build backend."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    texts = (project["project"]["dependencies"] + project["project"]["optional-dependencies"]["test"]
             + project["build-system"]["requires"])
    return [Requirement(t) for t in texts]


def test_every_locked_package_has_an_exact_version_and_a_hash():
    entries = locked()
    assert len(entries) > 20, "requirements.lock looks empty"
    unhashed = [name for name, e in entries.items() if not e["hashes"]]
    assert not unhashed, f"locked without a hash: {unhashed}; {REFRESH}"


def test_the_lock_satisfies_pyproject():
    entries = locked()
    problems = []
    for req in declared():
        entry = entries.get(canonicalize_name(req.name))
        if entry is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(entry["version"], prereleases=True):
            problems.append(f"{req} but the lock has {entry['version']}")
    assert not problems, f"pyproject.toml and requirements.lock disagree: {'; '.join(problems)}; {REFRESH}"


def test_the_lock_holds_nothing_that_pyproject_no_longer_asks_for():
    """Every direct entry of the lock is a requirement of pyproject.toml (pip-compile marks them)."""
    wanted = {canonicalize_name(r.name) for r in declared()}
    direct = {name for name, e in locked().items() if any("pyproject.toml" in v for v in e["via"])}
    stale = sorted(direct - wanted)
    assert not stale, f"the lock still holds {stale}, which pyproject.toml no longer asks for; {REFRESH}"


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="checks the .venv that scripts/setup made; this is another environment")
def test_the_setup_venv_holds_exactly_the_lock():
    entries = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("pocketkube", None)
    installed.pop("pip", None)  # the venv's own installer, from Python's ensurepip
    differ = sorted(f"{n} {installed.get(n, 'missing')} (lock: {entries[n]['version'] if n in entries else 'absent'})"
                    for n in set(entries) | set(installed)
                    if installed.get(n) != entries.get(n, {}).get("version"))
    assert not differ, f".venv differs from requirements.lock: {', '.join(differ)}; run `scripts/setup`"
