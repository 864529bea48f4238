"""Target and payload resolution: registered names (entry points), user modules from the
current folder, files, and errors that name the field and the fix."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

from harness.targets import Target, TargetContext, TargetError
from harness.targets import registry
from harness.targets.imports import import_object
from harness.targets.resolve import build_target, resolve_payload


@pytest.fixture
def clean_path(monkeypatch):
    """sys.path and sys.modules restored after the test (imports here add to both)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def test_a_module_in_the_current_folder_resolves_as_python_m_does(tmp_path, monkeypatch, clean_path):
    (tmp_path / "lbh_cwd_mod.py").write_text("def fn():\n    return 7\n")
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]
    assert import_object("lbh_cwd_mod:fn", "target")() == 7


def test_a_file_target_imports_its_siblings(tmp_path, clean_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "lbh_sibling.py").write_text("VALUE = 5\n")
    (tmp_path / "sub" / "lbh_calls.py").write_text("import lbh_sibling\n\ndef call():\n    return lbh_sibling.VALUE\n")
    assert import_object(f"{tmp_path}/sub/lbh_calls.py:call", "target")() == 5


def test_import_failures_name_the_module_line(tmp_path, monkeypatch, clean_path):
    (tmp_path / "lbh_broken.py").write_text("x = 1\n\nraise RuntimeError('boom at import')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TargetError) as err:
        import_object("lbh_broken:fn", "target")
    msg = str(err.value)
    assert msg.startswith("target: importing 'lbh_broken' failed: RuntimeError: boom at import")
    assert "lbh_broken.py, line 3: raise RuntimeError('boom at import')" in msg
    with pytest.raises(TargetError, match=r"target: no module named 'lbh_nowhere_xyz' \(looked in the current folder"):
        import_object("lbh_nowhere_xyz:fn", "target")
    with pytest.raises(TargetError, match="no such file"):
        import_object("missing/file.py:fn", "payload")
    (tmp_path / "lbh_ok.py").write_text("VALUE = 3\n")
    with pytest.raises(TargetError, match="is not callable"):
        import_object("lbh_ok:VALUE", "target")


def test_unknown_names_list_what_is_registered():
    with pytest.raises(TargetError) as err:
        build_target("nope-target")
    assert "registered:" in str(err.value) and "features" in str(err.value)
    with pytest.raises(TargetError, match="payload: unknown 'nope'; expected a registered name"):
        resolve_payload("nope")
    with pytest.raises(TargetError, match="builds its own inputs"):
        build_target("features", payload="feature_window")
    with pytest.raises(TargetError, match="only registered targets take it"):
        build_target("os:getpid", faults={"error_rate": 0.1})


def test_a_plugin_whose_packages_are_missing_names_its_extra(monkeypatch):
    ep = metadata.EntryPoint(name="needs-extra", value="lbh_not_installed_xyz.mod:factory [gpu]",
                             group=registry.TARGET_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda group: {"needs-extra": ep})
    with pytest.raises(TargetError) as err:
        build_target("needs-extra")
    assert "pip install 'latency-budget-harness[gpu]'" in str(err.value)
    assert "lbh_not_installed_xyz" in str(err.value)


def test_a_registered_factory_gets_the_context_and_must_return_a_target(monkeypatch):
    seen = {}

    def factory(ctx: TargetContext) -> Target:
        seen["ctx"] = ctx
        return Target(ctx.name, (ctx.name,), lambda k: (ctx.name, int, (k,)))

    class Ep:
        value = "tests:factory"

        def load(self):
            return factory

    class BadEp(Ep):
        def load(self):
            return lambda ctx: "not a target"

    monkeypatch.setattr(registry, "_entry_points", lambda group: {"mine": Ep(), "bad": BadEp()})

    t = build_target("mine", seed=4, faults={"x": 1})
    assert t.dispatch(3) == ("mine", int, (3,)) and seen["ctx"].seed == 4 and seen["ctx"].faults == {"x": 1}
    with pytest.raises(TargetError, match="returned str, not a harness Target"):
        build_target("bad")
    mixed = build_target("mixed", mix={"mine": 1.0})
    assert mixed.labels == ("mine",) and mixed.dispatch(0)[0] == "mine"


def test_describe_lists_the_reference_plugin():
    lines = registry.describe()
    assert any(line.strip().startswith("features ") and "workloads.plugin.targets:features" in line for line in lines)
    assert any(line.strip().startswith("feature_window ") for line in lines)
