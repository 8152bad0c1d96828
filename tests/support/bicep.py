"""The Bicep under infra/ read with tree-sitter-bicep: parse trees, literals, resources and declarations.

Not a test module: tests/test_infra.py and tests/test_bicep_types.py import it. Values are read from the parse
tree (a literal becomes its Python value; anything else an ``Expr`` holding its source text), so checks see
where a property sits, not what a regular expression guesses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@cache
def tree(path: Path) -> tree_sitter.Tree:
    return _parser().parse(path.read_bytes())


def text(node: tree_sitter.Node | None) -> str:
    return "" if node is None else (node.text or b"").decode("utf-8")


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


@dataclass(frozen=True)
class Expr:
    """A Bicep expression that is not a plain literal (kept as source text)."""

    source: str


_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\${": "${"}


def literal(node: tree_sitter.Node) -> Any:
    """Python value of a literal node (string, number, bool, null, object, array); else an Expr."""
    if node.type == "string":
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append(_ESCAPES.get(text(child), text(child)))
            else:  # interpolation
                return Expr(text(node))
        return "".join(parts)
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "null":
        return None
    if node.type == "object":
        return dict(properties(node))
    if node.type == "array":
        return [literal(child) for child in node.named_children if child.type != "comment"]
    return Expr(text(node))


def properties(obj: tree_sitter.Node) -> Iterator[tuple[str, Any]]:
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key_node, value_node = prop.named_children[0], prop.named_children[-1]
        key = literal(key_node) if key_node.type == "string" else text(key_node)
        yield str(key), literal(value_node)


def value_node(obj: tree_sitter.Node, key: str) -> tree_sitter.Node | None:
    for prop in obj.named_children:
        if prop.type == "object_property":
            key_node = prop.named_children[0]
            name = literal(key_node) if key_node.type == "string" else text(key_node)
            if name == key:
                return prop.named_children[-1]
    return None


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: tree_sitter.Node  # the object (inside an if/for when conditional or looped)

    def get(self, *path: str) -> Any:
        node: tree_sitter.Node | None = self.body
        for key in path:
            if node is None or node.type != "object":
                return None
            node = value_node(node, key)
        return None if node is None else literal(node)


def body_of(node: tree_sitter.Node) -> tree_sitter.Node:
    while node.type != "object":
        objects = [c for c in node.named_children if c.type in ("object", "for_statement", "if_statement")]
        node = objects[-1]
    return node


def resources(path: Path) -> list[Resource]:
    found = []
    for node in tree(path).root_node.named_children:
        if node.type != "resource_declaration":
            continue
        type_with_version = literal(node.named_children[1])
        resource_type, _, version = type_with_version.partition("@")
        found.append(
            Resource(
                file=path,
                symbol=text(node.named_children[0]),
                type=resource_type,
                api_version=version,
                existing=any(child.type == "existing" for child in node.children),
                body=body_of(node.named_children[-1]),
            )
        )
    return found


def all_resources() -> list[Resource]:
    return [resource for path in BICEP_FILES for resource in resources(path)]


def declared(path: Path, kind: str) -> dict[str, tree_sitter.Node]:
    """Top-level declarations of one kind (variable, parameter, output) by name -> the declaration node."""
    return {
        text(node.named_children[0]): node
        for node in tree(path).root_node.named_children
        if node.type == f"{kind}_declaration"
    }


def variable(path: Path, name: str) -> Any:
    return literal(declared(path, "variable")[name].named_children[-1])


def parameter_default(path: Path, name: str) -> Any:
    node = declared(path, "parameter")[name]
    children = node.named_children
    return literal(children[-1]) if len(children) == 3 else None


def calls(path: Path, function: str) -> Iterator[tree_sitter.Node]:
    for node in walk(tree(path).root_node):
        if node.type == "call_expression" and text(node.child_by_field_name("function")) == function:
            yield node


def only(items: list[Resource], resource_type: str) -> Resource:
    matching = [r for r in items if r.type == resource_type and not r.existing]
    assert len(matching) == 1, f"expected one new {resource_type}, found {[r.symbol for r in matching]}"
    return matching[0]


def app_settings(path: Path, name: str) -> dict[str, Any]:
    """An array variable of {name, value} app settings, as name -> value (names unique)."""
    entries = variable(path, name)
    assert isinstance(entries, list), f"{name} must be an array of {{name, value}} objects"
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"{name} repeats a setting"
    assert all(set(entry) == {"name", "value"} for entry in entries)
    return {entry["name"]: entry["value"] for entry in entries}


def camel(setting_name: str) -> str:
    first, *rest = setting_name.lower().split("_")
    return first + "".join(word.capitalize() for word in rest)
