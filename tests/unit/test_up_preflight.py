"""What `pocketkube up` and `join` check before they make anything: the pause program every
pod's sandbox runs (catatonit, which scripts/setup installs)."""

from __future__ import annotations

import pytest

from pocketkube.cli import up as up_cmd
from pocketkube.node import sandbox


def test_the_pause_program_of_this_machine_is_found():
    up_cmd.require_pause_program("up")  # scripts/setup installed catatonit


def test_a_machine_without_the_pause_program_is_told_what_to_install(monkeypatch):
    monkeypatch.setattr(sandbox, "PAUSE_PROGRAM", "pocketkube-test-no-such-pause")
    with pytest.raises(up_cmd.UpError) as exc:
        up_cmd.require_pause_program("join")
    assert str(exc.value) == ("pocketkube join needs pocketkube-test-no-such-pause, every pod's pause process "
                              "(apt-get install pocketkube-test-no-such-pause; scripts/setup installs it)")
