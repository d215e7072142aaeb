"""The domain stays short sequences of small named rules (STYLE.md point 13): no function in any
module of ``domain/`` longer than 60 lines, decorators and docstring included. Every module is
checked (``domain/**/*.py``, a subpackage too), so a new one is held to it from its first commit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("domain/**/*.py"))
LIMIT = 60


def lengths(path: Path) -> dict[str, int]:
    """Each function's length in lines (``Class.method`` for methods)."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                out[prefix + child.name] = (child.end_lineno or child.lineno) - start + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return out


def test_every_domain_module_is_checked() -> None:
    # An empty glob (a moved folder) would otherwise check nothing and pass.
    planners = {"domain/plan.py", "domain/onboard.py", "domain/change.py", "domain/steps.py"}
    assert planners < set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_no_function_of_a_domain_module_is_longer_than_the_limit(module: str) -> None:
    long = {k: n for k, n in lengths(ROOT / module).items() if n > LIMIT}
    assert not long, f"{module}: split these into named rules: {long}"
