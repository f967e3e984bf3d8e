"""The list of controllers `pocketkube server` runs."""

from __future__ import annotations

CONTROLLERS: list = []
