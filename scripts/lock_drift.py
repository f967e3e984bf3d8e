"""How the running Python's installed packages differ from requirements.lock (used by scripts/setup).

Prints two lines: `same` or `drift`, then the names installed but not in the lock (to remove).
"""

import re
import sys
from importlib import metadata


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock_path: str = "requirements.lock") -> None:
    text = open(lock_path).read()
    locked = {norm(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}
    installed = {norm(d.metadata["Name"]): (d.metadata["Name"], d.version) for d in metadata.distributions()}
    extra = sorted(name for key, (name, _) in installed.items() if key not in locked and key not in ("pip", "pocketkube"))
    moved = any(installed.get(key, (None, None))[1] != version for key, version in locked.items())
    print("drift" if extra or moved else "same")
    print(" ".join(extra))


if __name__ == "__main__":
    main(*sys.argv[1:])
