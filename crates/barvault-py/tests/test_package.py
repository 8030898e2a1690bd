"""The installed package: its version, its type stubs and its docstrings."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from conftest import REPO

import barvault


def workspace_version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)


def test_version_is_the_workspace_version():
    assert barvault.__version__ == workspace_version()


def test_the_wheel_ships_type_stubs():
    package = Path(barvault.__file__).parent
    assert (package / "py.typed").is_file()
    stub = package / "__init__.pyi"
    assert stub.is_file()
    assert stub.read_text() == (REPO / "crates" / "barvault-py" / "barvault.pyi").read_text()


def stub_tree() -> ast.Module:
    return ast.parse((REPO / "crates" / "barvault-py" / "barvault.pyi").read_text())


def test_the_stubs_name_every_public_name_and_nothing_else():
    tree = stub_tree()
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {n for n in barvault.__all__ if not n.startswith("__")}
    assert stubbed == public
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            cls = getattr(barvault, node.name)
            members = {m.name for m in node.body if isinstance(m, ast.FunctionDef)}
            members |= {m.target.id for m in node.body if isinstance(m, ast.AnnAssign)}
            actual = {m for m in dir(cls) if not m.startswith("_")} - set(dir(Exception))
            assert members == actual, node.name


def test_every_public_name_has_a_docstring():
    assert barvault.__doc__ and "barvault" in barvault.__doc__
    for name in barvault.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(barvault, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member in dir(obj):
                if not member.startswith("_"):
                    assert inspect.getdoc(getattr(obj, member)), f"{name}.{member}"


def test_signatures_use_the_documented_keywords():
    sig = inspect.signature(barvault.open)
    assert list(sig.parameters) == ["path", "backup_enabled", "compression", "validation", "config"]
    persist = inspect.signature(barvault.Vault.persist)
    assert list(persist.parameters)[1:] == ["data", "kind", "symbol", "period", "replace", "on_invalid", "correlation_id"]
    load = inspect.signature(barvault.Vault.load)
    assert [p.kind.name for p in load.parameters.values()][-2:] == ["KEYWORD_ONLY", "KEYWORD_ONLY"]
