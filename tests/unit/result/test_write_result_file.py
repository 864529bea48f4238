"""The result file as the user (or the host of a container) gets it: 0644 less the
umask, fsynced before the atomic rename, the folder fsynced after it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from harness.result import schema
from harness.result.schema import write_result


@pytest.fixture
def umask():
    def set_(mask: int) -> None:
        os.umask(mask)
    old = os.umask(0o022)
    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o644), (0o027, 0o640)])
def test_mode_is_0644_less_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    p = write_result({"a": 1}, tmp_path / "r.json")
    assert stat.S_IMODE(p.stat().st_mode) == mode
    assert json.loads(p.read_text()) == {"a": 1}


def test_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        order.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def replace(a, b):
        order.append(("replace", None))
        real_replace(a, b)

    monkeypatch.setattr(schema.os, "fsync", fsync)
    monkeypatch.setattr(schema.os, "replace", replace)
    write_result({"a": 1}, tmp_path / "r.json")
    assert order == [("fsync", False), ("replace", None), ("fsync", True)]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
