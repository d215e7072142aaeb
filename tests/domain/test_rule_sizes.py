"""The planners stay short sequences of small named rules (STYLE.md point 13): no function in
the planner modules longer than 60 lines, decorators and docstring included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANNERS = ["domain/plan.py", "domain/onboard.py", "domain/change.py", "domain/steps.py"]
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


@pytest.mark.parametrize("module", PLANNERS)
def test_no_function_of_a_planner_is_longer_than_the_limit(module: str) -> None:
    long = {k: n for k, n in lengths(ROOT / module).items() if n > LIMIT}
    assert not long, f"{module}: split these into named rules: {long}"
