"""Stale stack folders: a later start removes those whose owner is gone (a harness killed
with -9 before its guardian could act), and nothing else."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from harness.observe.stack import OWNER_FILE, STACK_PREFIX, remove_stale_stacks


def _folder(tmp_path, name, owner=None):
    f = tmp_path / (STACK_PREFIX + name)
    f.mkdir()
    (f / "prometheus.yml").write_text("x")
    if owner is not None:
        (f / OWNER_FILE).write_text(owner)
    return f


def test_only_folders_of_gone_owners_on_this_host_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    gone = _folder(tmp_path, "gone", f"{dead.pid} - {host}\n")
    gone_old_format = _folder(tmp_path, "gone-pid-only", f"{dead.pid}\n")
    # a live pid whose start time differs: the owner died and the pid was reused
    reused = _folder(tmp_path, "reused", f"{os.getppid()} 1 {host}\n")
    mine = _folder(tmp_path, "mine", f"{os.getpid()} - {host}\n")
    no_owner = _folder(tmp_path, "creating")
    elsewhere = _folder(tmp_path, "other-host", f"{dead.pid} - not-{host}\n")
    garbage = _folder(tmp_path, "garbage", "not a pid\n")
    removed = remove_stale_stacks(tmp_path)
    assert sorted(removed) == sorted([gone, gone_old_format, reused])
    for kept in (mine, no_owner, elsewhere, garbage):
        assert kept.exists()
    assert not gone.exists() and not reused.exists()
