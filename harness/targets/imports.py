"""``module:function`` and ``path/to/file.py:function``, resolved the way users expect.

``module`` resolves from the current folder first, as ``python -m`` does (a console
script's ``sys.path`` starts at its own bin folder, so ``mymod.py`` beside the user would
otherwise not be found). A file path loads that file, with its folder first on the path so
its own sibling imports work, as ``python path/to/file.py`` does. A module that fails while
importing is reported with its own failing line, not the harness's traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from harness.targets.base import TargetError

__all__ = ["import_object"]


def _failing_line(exc: BaseException, origin: str) -> str:
    """``(file, line N: text)`` of the deepest frame outside importlib, or ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename
              and not f.filename.startswith("<frozen")]
    for frame in reversed(frames):
        if origin and os.path.abspath(frame.filename) != os.path.abspath(origin):
            continue
        return f" ({frame.filename}, line {frame.lineno}: {(frame.line or '').strip()})"
    if frames:
        f = frames[-1]
        return f" ({f.filename}, line {f.lineno}: {(f.line or '').strip()})"
    return ""


def _import_file(path: Path, what: str) -> Any:
    if not path.is_file():
        raise TargetError(f"{what}: no such file {str(path)!r}")
    name = path.stem
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{what}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # workers and pickling find it by name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a module's SystemExit at import is its failure too
        sys.modules.pop(name, None)
        raise TargetError(f"{what}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
                          f"{_failing_line(exc, str(path))}") from None
    return module


def _import_module(name: str, what: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m`: the current folder first
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.split(".")[0] == exc.name.split(".")[0] and name.startswith(exc.name):
            raise TargetError(f"{what}: no module named {name!r} (looked in the current folder {cwd} and "
                              "on sys.path; give a file as path/to/file.py:function, or install the package)"
                              ) from None
        origin = _origin(name)
        raise TargetError(f"{what}: importing {name!r} failed: ModuleNotFoundError: {exc}"
                          f"{_failing_line(exc, origin)}") from None
    except BaseException as exc:
        raise TargetError(f"{what}: importing {name!r} failed: {type(exc).__name__}: {exc}"
                          f"{_failing_line(exc, _origin(name))}") from None


def _origin(name: str) -> str:
    module = sys.modules.get(name)
    spec = module.__spec__ if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except BaseException:  # noqa: B036 - find_spec imports the parents, which may fail (again)
            spec = None
    return (spec.origin or "") if spec is not None else ""


def import_object(spec: str, what: str) -> Callable[..., Any]:
    """The callable named by ``spec``; ``what`` names the field in every error."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise TargetError(f"{what}: expected 'module:function' or 'path/to/file.py:function', got {spec!r}")
    if module_part.endswith(".py") or "/" in module_part or os.sep in module_part:
        obj: Any = _import_file(Path(module_part).expanduser(), what)
        where = module_part
    else:
        obj = _import_module(module_part, what)
        where = f"module {module_part!r}"
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{what}: {where} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TargetError(f"{what}: {spec!r} is not callable")
    return obj
