"""The part of OData v4's ``$filter`` that Microsoft Graph serves on directory objects, for the
sandbox's imitation of Graph (:mod:`sandbox.idp.graph`).

Supported, as Graph documents for users and groups: ``eq``, ``ne``, ``in (…)``,
``startswith(p,'x')``, ``endswith(p,'x')``, ``and``, ``or``, ``not``, parentheses, and lambdas on
multi-valued properties (``otherMails/any(m:m eq 'x')``). String literals are single-quoted with a
quote doubled; strings compare without regard to case, as Entra ID compares these properties.
``ne``, ``not`` and ``endswith`` are "advanced queries": Graph serves them only with
``ConsistencyLevel: eventual`` and ``$count=true`` (:attr:`Filter.advanced` tells the caller).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]
Test = Callable[[Row, dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),:])"
    r"|(?P<name>[A-Za-z_@][A-Za-z0-9_./@]*))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


class FilterError(ValueError):
    """A ``$filter`` Graph would refuse: ``code`` and ``message`` of its 400 answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Filter:
    """A parsed ``$filter``: :meth:`match` a row; ``advanced`` when it needs advanced queries."""

    test: Test
    advanced: bool
    # ``prop eq 'x'`` alone: (prop, value), so the caller may look it up by index.
    equality: tuple[str, str] | None = None

    def match(self, row: Row) -> bool:
        return self.test(row, {})


def _or(a: Test, b: Test) -> Test:
    return lambda r, env: a(r, env) or b(r, env)


def _and(a: Test, b: Test) -> Test:
    return lambda r, env: a(r, env) and b(r, env)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _compare(op: str, left: Any, right: Any) -> bool:
    left, right = _fold(left), _fold(right)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    return bool(
        {"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op]
    )


class _Parser:
    def __init__(self, text: str, properties: Mapping[str, str], resource: str) -> None:
        self.tokens = self._lex(text)
        self.pos = 0
        self.properties = {k.lower(): k for k in properties}
        self.multi = {k.lower() for k, kind in properties.items() if kind == "collection"}
        self.resource = resource
        self.advanced = False

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise FilterError("BadRequest", f"Syntax error at position {pos} in '{text}'.")
            kind = m.lastgroup or ""
            out.append((kind, m.group(kind)))
            pos = m.end()
        return out

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1].lower() != value):
            want = f"'{value}'" if value else "a term"
            raise FilterError("BadRequest", f"Syntax error: expected {want} in $filter.")
        self.pos += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "name" and tok[1].lower() in words

    # expr := and ('or' and)* ; and := unary ('and' unary)*
    def expr(self) -> Test:
        left = self.conj()
        while self.word("or"):
            self.take()
            left = _or(left, self.conj())
        return left

    def conj(self) -> Test:
        left = self.unary()
        while self.word("and"):
            self.take()
            left = _and(left, self.unary())
        return left

    def unary(self) -> Test:
        if self.word("not"):
            self.take()
            self.advanced = True
            inner = self.unary()
            return lambda r, env: not inner(r, env)
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.term()

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "name" and text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text.lower()]
        raise FilterError("BadRequest", f"Syntax error: '{text}' is not a literal.")

    def operand(self, vars_: set[str]) -> Callable[[Row, dict[str, Any]], Any]:
        """A property of the row, or a lambda variable."""
        kind, name = self.take()
        if kind != "name":
            raise FilterError("BadRequest", f"Syntax error at '{name}' in $filter.")
        if name in vars_:
            return lambda r, env: env.get(name)
        key = self.properties.get(name.lower())
        if key is None:
            raise FilterError(
                "Request_UnsupportedQuery",
                f"Unsupported or invalid query filter clause specified for property '{name}' "
                f"of resource '{self.resource}'.",
            )
        return lambda r, env: r.get(key)

    def term(self, vars_: frozenset[str] = frozenset()) -> Test:
        tok = self.peek()
        if tok is None:
            raise FilterError("BadRequest", "Syntax error: the $filter ends too soon.")
        name = tok[1]
        if self.word("startswith", "endswith"):
            func = name.lower()
            self.advanced |= func == "endswith"
            self.take()
            self.take("(")
            prop = self.operand(set(vars_))
            self.take(",")
            value = self.literal()
            self.take(")")
            if not isinstance(value, str):
                raise FilterError("BadRequest", f"{func} takes a string.")

            def starts(r: Row, env: dict[str, Any]) -> bool:
                got = prop(r, env)
                if not isinstance(got, str):
                    return False
                g, v = got.casefold(), value.casefold()
                return g.startswith(v) if func == "startswith" else g.endswith(v)

            return starts
        if "/" in name and tok[0] == "name":
            return self.lambda_(vars_)
        prop = self.operand(set(vars_))
        if self.word("in"):
            self.take()
            self.take("(")
            values = [self.literal()]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.literal())
            self.take(")")
            folded = {_fold(v) for v in values}
            return lambda r, env: _fold(prop(r, env)) in folded
        op = self.take()[1].lower()
        if op not in _OPS:
            raise FilterError("BadRequest", f"Syntax error: '{op}' is not an operator.")
        self.advanced |= op == "ne"
        value = self.literal()
        return lambda r, env: _compare(op, prop(r, env), value)

    def lambda_(self, vars_: frozenset[str]) -> Test:
        _, path = self.take()
        prop_name, _, func = path.partition("/")
        key = self.properties.get(prop_name.lower())
        if key is None or key.lower() not in self.multi or func.lower() not in ("any", "all"):
            raise FilterError(
                "Request_UnsupportedQuery",
                f"Unsupported or invalid query filter clause specified for property "
                f"'{prop_name}' of resource '{self.resource}'.",
            )
        self.take("(")
        _, var = self.take()
        self.take(":")
        body = self.expr_in(vars_ | {var})
        self.take(")")
        quantifier = any if func.lower() == "any" else all

        def test(r: Row, env: dict[str, Any]) -> bool:
            items = r.get(key) or []
            return quantifier(body(r, {**env, var: item}) for item in items)

        return test

    def expr_in(self, vars_: frozenset[str]) -> Test:
        """A lambda's body: comparisons of its variable (no nested or/and needed by Graph)."""
        left = self.term(vars_)
        while self.word("or", "and"):
            joiner = _or if self.take()[1].lower() == "or" else _and
            left = joiner(left, self.term(vars_))
        return left


def parse_filter(text: str, properties: Mapping[str, str], resource: str) -> Filter:
    """Parse a ``$filter`` over ``properties`` (name → ``"value"`` or ``"collection"``).

    Raises:
        FilterError: a syntax error, or a property Graph does not filter on.
    """
    parser = _Parser(text, properties, resource)
    test = parser.expr()
    if parser.peek() is not None:
        raise FilterError("BadRequest", f"Syntax error at '{parser.peek()[1]}' in $filter.")  # type: ignore[index]
    toks = parser.tokens
    equality = None
    if len(toks) == 3 and toks[1][1].lower() == "eq" and toks[2][0] == "str":
        key = parser.properties.get(toks[0][1].lower())
        if key is not None:
            equality = (key, toks[2][1][1:-1].replace("''", "'"))
    return Filter(test=test, advanced=parser.advanced, equality=equality)
