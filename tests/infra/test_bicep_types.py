"""Every resource declared in infra/ against Azure's resource type data (Azure/bicep-types-az).

The Bicep CLI is not available here, so this does what its type check does for the parts we write as
literals: the type and api-version exist, every property path exists, required properties are present,
read-only properties are not set, and literal values fit the declared type (allowed string values, integer
and string bounds, discriminated objects by their discriminator). Values that are expressions (a parameter, a
function call) cannot be judged without evaluating the template and are left to ARM; a variable that holds a
literal object is followed.

The type data is read from ``../shared/reference-data/bicep-types`` (one ``<Type>@<version>.json`` per
resource type, in the Azure/bicep-types-az format) with its ``overrides.json`` for known gaps of that data.
The test is skipped with a notice when the folder is absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter

from bicep import BICEP_FILES, INFRA, REPO_ROOT, Resource, all_resources, declared, literal, text

TYPES_DIR = REPO_ROOT.parent / "shared" / "reference-data" / "bicep-types"

# Flags of a property in the type data (Azure/bicep-types src/bicep-types/src/types.ts, ObjectTypePropertyFlags).
REQUIRED, READ_ONLY = 1, 2

#: Keys of a resource body that are Bicep's own, not the resource's.
BICEP_KEYS = {"parent", "scope", "dependsOn"}

#: Resource types the reference data does not hold; each is named here with why it is used, and the test
#: fails when the data gains it (then it must be checked like the others).
#: (Microsoft.Authorization/roleDefinitions@2022-04-01 is in the data now: the custom roles of app/acs-sender.bicep
#: and app/suppression-writer.bicep are checked like every other resource.)
NOT_IN_REFERENCE_DATA: dict[str, str] = {
    "Microsoft.Storage/storageAccounts/queueServices@2023-05-01": "the fold queues' service (app/storage.bicep)",
    "Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01": "the fold queues (app/storage.bicep)",
}

pytestmark = pytest.mark.skipif(
    not TYPES_DIR.is_dir(),
    reason=f"bicep type data not found at {TYPES_DIR} (the steering repository's shared/reference-data)",
)


# --- the type data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeFile:
    """One ``types.json`` array; ``$ref`` values ``#/N`` index into it."""

    types: list[dict[str, Any]]

    def resolve(self, ref: dict[str, str]) -> dict[str, Any]:
        return self.types[int(ref["$ref"].removeprefix("#/"))]


@cache
def type_files() -> dict[str, TypeFile]:
    """``Type@version`` -> its type file, for every file in the reference data."""
    found = {}
    for path in sorted(TYPES_DIR.glob("*@*.json")):
        types = json.loads(path.read_text(encoding="utf-8"))
        for entry in types:
            if entry["$type"] == "ResourceType":
                found[entry["name"]] = TypeFile(types)
    return found


@cache
def overrides() -> dict[str, dict[str, Any]]:
    path = TYPES_DIR / "overrides.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {name: entry for name, entry in data.items() if not name.startswith("$")}


# --- checking a value against a type ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checker:
    """Checks literal Bicep nodes of one file against the types of one type file; collects mismatches."""

    file: TypeFile
    variables: dict[str, tree_sitter.Node]
    where: str
    mismatches: list[str]

    def fail(self, path: str, message: str) -> None:
        self.mismatches.append(f"{self.where} {path or '<body>'}: {message}")

    def follow(self, node: tree_sitter.Node) -> tree_sitter.Node:
        """A variable that holds a literal is checked as that literal; for-expressions by their item."""
        seen = 0
        while node.type == "identifier" and text(node) in self.variables and seen < 10:
            node = self.variables[text(node)].named_children[-1]
            seen += 1
        if node.type == "parenthesized_expression" and len(node.named_children) == 1:
            return self.follow(node.named_children[0])
        return node

    def check(self, node: tree_sitter.Node, type_ref: dict[str, Any], path: str) -> None:
        node = self.follow(node)
        if node.type == "ternary_expression":  # cond ? a : b: each branch must fit (null means "not set")
            for branch in node.named_children[1:]:
                if branch.type != "null":
                    self.check(branch, type_ref, path)
            return
        declared_type = self.file.resolve(type_ref) if "$ref" in type_ref else type_ref
        kind = declared_type["$type"]
        if node.type == "array" and node.named_children and node.named_children[0].type == "for_statement":
            node = node.named_children[0]
        if node.type == "for_statement":  # [for x in xs: {...}] : the item is checked against the item type
            if kind != "ArrayType":
                self.fail(path, f"a for-expression where {kind} is expected")
                return
            self.check(node.named_children[-1], declared_type["itemType"], path + "[]")
            return
        if kind == "AnyType":
            return
        if kind == "UnionType":
            self._check_union(node, declared_type, path)
            return
        value = literal(node)
        if node.type not in ("string", "number", "boolean", "null", "object", "array") or _is_expr(value):
            return  # an expression: ARM evaluates it
        if kind == "ObjectType":
            self._check_object(node, declared_type, path)
        elif kind == "DiscriminatedObjectType":
            self._check_discriminated(node, declared_type, path)
        elif kind == "ArrayType":
            self._check_array(node, declared_type, path)
        elif kind in ("StringType", "StringLiteralType"):
            self._check_string(node, declared_type, path)
        elif kind == "IntegerType":
            self._check_integer(node, declared_type, path)
        elif kind == "BooleanType":
            if node.type != "boolean":
                self.fail(path, f"expected a bool, found {text(node)[:40]}")
        else:
            self.fail(path, f"type {kind} is not understood by this test")

    def _check_union(self, node: tree_sitter.Node, union: dict[str, Any], path: str) -> None:
        members = [self.file.resolve(ref) for ref in union["elements"]]
        if node.type != "string" or _is_expr(literal(node)):
            if not any(m["$type"] != "StringLiteralType" for m in members) and node.type in ("number", "boolean"):
                self.fail(path, f"expected one of the allowed strings, found {text(node)}")
            return
        if any(m["$type"] == "StringType" for m in members):
            return  # an open set (modelAsString): any string is accepted
        allowed = [m["value"] for m in members if m["$type"] == "StringLiteralType"]
        if allowed and literal(node) not in allowed:
            self.fail(path, f"{literal(node)!r} is not one of {allowed}")

    def _properties(self, obj: tree_sitter.Node) -> Iterator[tuple[str, tree_sitter.Node]]:
        for prop in obj.named_children:
            if prop.type != "object_property":
                continue
            key_node = prop.named_children[0]
            key = literal(key_node) if key_node.type == "string" else text(key_node)
            yield (key if isinstance(key, str) else f"<{text(key_node)}>"), prop.named_children[-1]

    def _check_object(
        self,
        obj: tree_sitter.Node,
        object_type: dict[str, Any],
        path: str,
        *,
        extra: dict[str, Any] | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        declared_properties = {**object_type.get("properties", {}), **(extra or {})}
        additional = object_type.get("additionalProperties")
        present = set()
        for key, value in self._properties(obj):
            present.add(key)
            if key in skip:
                continue
            where = f"{path}.{key}" if path else key
            prop = declared_properties.get(key)
            if prop is None:
                if additional is not None:
                    self.check(value, additional, where)
                else:
                    self.fail(where, f"no such property in {object_type.get('name', 'the type')}")
                continue
            if prop.get("flags", 0) & READ_ONLY:
                self.fail(where, "is read-only")
                continue
            self.check(value, prop["type"], where)
        for key, prop in declared_properties.items():
            flags = prop.get("flags", 0)
            if flags & REQUIRED and not flags & READ_ONLY and key not in present:
                self.fail(f"{path}.{key}" if path else key, "is required")

    def check_body(self, body: tree_sitter.Node, body_type: dict[str, Any], extra: dict[str, Any]) -> None:
        """A resource body: an object type, or (Microsoft.Web child resources) one discriminated by name."""
        skip = frozenset(BICEP_KEYS)
        if body_type["$type"] == "DiscriminatedObjectType":
            self._check_discriminated(body, body_type, "", extra=extra, skip=skip)
        else:
            self._check_object(body, body_type, "", extra=extra, skip=skip)

    def _check_discriminated(
        self,
        obj: tree_sitter.Node,
        union: dict[str, Any],
        path: str,
        *,
        extra: dict[str, Any] | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        discriminator = union["discriminator"]
        value = dict(self._properties(obj)).get(discriminator)
        chosen = literal(self.follow(value)) if value is not None else None
        if not isinstance(chosen, str):
            if value is None:
                self.fail(f"{path}.{discriminator}", "is required (it selects the object's type)")
            return
        where = f"{path}.{discriminator}" if path else discriminator
        if chosen not in union["elements"]:
            self.fail(where, f"{chosen!r} is not one of {sorted(union['elements'])}")
            return
        element = self.file.resolve(union["elements"][chosen])
        merged = {**element, "properties": {**union.get("baseProperties", {}), **element.get("properties", {})}}
        self._check_object(obj, merged, path, extra=extra, skip=skip | {discriminator})

    def _check_array(self, array: tree_sitter.Node, array_type: dict[str, Any], path: str) -> None:
        items = [child for child in array.named_children if child.type != "comment"]
        if "minLength" in array_type and len(items) < array_type["minLength"]:
            self.fail(path, f"needs at least {array_type['minLength']} items")
        if "maxLength" in array_type and len(items) > array_type["maxLength"]:
            self.fail(path, f"takes at most {array_type['maxLength']} items")
        for index, item in enumerate(items):
            self.check(item, array_type["itemType"], f"{path}[{index}]")

    def _check_string(self, node: tree_sitter.Node, string_type: dict[str, Any], path: str) -> None:
        value = literal(node)
        if not isinstance(value, str):
            self.fail(path, f"expected a string, found {text(node)[:40]}")
            return
        if string_type["$type"] == "StringLiteralType" and value != string_type["value"]:
            self.fail(path, f"must be {string_type['value']!r}, found {value!r}")
        if "minLength" in string_type and len(value) < string_type["minLength"]:
            self.fail(path, f"shorter than {string_type['minLength']}")
        if "maxLength" in string_type and len(value) > string_type["maxLength"]:
            self.fail(path, f"longer than {string_type['maxLength']}")

    def _check_integer(self, node: tree_sitter.Node, integer_type: dict[str, Any], path: str) -> None:
        value = literal(node)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(path, f"expected an integer, found {text(node)[:40]}")
            return
        if "minValue" in integer_type and value < integer_type["minValue"]:
            self.fail(path, f"{value} is below {integer_type['minValue']}")
        if "maxValue" in integer_type and value > integer_type["maxValue"]:
            self.fail(path, f"{value} is above {integer_type['maxValue']}")


def _is_expr(value: Any) -> bool:
    return type(value).__name__ == "Expr"


def mismatches_of(resource: Resource) -> list[str]:
    """Every mismatch of one declared resource with the type data (empty: it fits)."""
    full_type = f"{resource.type}@{resource.api_version}"
    name = resource.file.relative_to(INFRA).as_posix() if resource.file.is_relative_to(INFRA) else resource.file.name
    where = f"{name}:{resource.symbol} ({full_type})"
    file = type_files().get(full_type)
    if file is None:
        if full_type in NOT_IN_REFERENCE_DATA:
            return []
        known = sorted(name for name in type_files() if name.startswith(resource.type + "@"))
        return [f"{where}: type and api-version not in the type data (it has {known or 'no version of it'})"]
    if resource.existing:
        return []  # only name/scope/parent are written for an existing resource
    resource_type = next(t for t in file.types if t["$type"] == "ResourceType" and t["name"] == full_type)
    body_type = file.resolve(resource_type["body"])
    extra = {
        name: {"type": {"$type": _TYPE_NAMES[spec["type"]]}, "flags": REQUIRED if spec.get("required") else 0}
        for name, spec in overrides().get(resource.type, {}).get("addProperties", {}).items()
    }
    found: list[str] = []
    variables = declared(resource.file, "variable")
    checker = Checker(file, variables, where, found)
    checker.check_body(resource.body, body_type, extra)
    return found


_TYPE_NAMES = {"string": "StringType", "int": "IntegerType", "bool": "BooleanType", "object": "AnyType"}


# --- the tests ----------------------------------------------------------------------------------------------


def test_every_resource_matches_the_type_data() -> None:
    declared_resources = all_resources()
    assert declared_resources
    problems = [problem for resource in declared_resources for problem in mismatches_of(resource)]
    assert not problems, f"{len(problems)} mismatch(es):\n" + "\n".join(problems)


def test_types_left_out_are_still_missing_from_the_data() -> None:
    """An entry of NOT_IN_REFERENCE_DATA is dropped as soon as the data can check it, and only used ones stay."""
    used = {f"{r.type}@{r.api_version}" for r in all_resources()}
    for name in NOT_IN_REFERENCE_DATA:
        assert name not in type_files(), f"{name} is in the type data now: remove it from NOT_IN_REFERENCE_DATA"
        assert name in used, f"{name} is no longer used: remove it from NOT_IN_REFERENCE_DATA"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_checker_sees_every_resource_of_the_file(path: Path) -> None:
    """The check covers every resource declaration tree-sitter finds (none hidden in an unread form)."""
    from bicep import resources, tree

    count = sum(1 for node in tree(path).root_node.named_children if node.type == "resource_declaration")
    assert len(resources(path)) == count


# The checker itself: a mismatch of each kind is reported, against the real type data.


def _check_source(source: str, tmp_path: Path) -> list[str]:
    from bicep import resources

    file = tmp_path / "probe.bicep"
    file.write_text(source, encoding="utf-8")
    return [problem for resource in resources(file) for problem in mismatches_of(resource)]


@pytest.mark.parametrize(
    "body,expected",
    [
        ("properties: { allow: false }\n  location: 'x'", []),  # location: from overrides.json
        ("properties: { allow: false }", ["location: is required"]),
        ("location: 'x'\n  properties: { allow: false, allowed: true }", ["properties.allowed: no such property"]),
        ("location: 'x'\n  properties: { allow: 'no' }", ["properties.allow: expected a bool"]),
        ("location: 'x'\n  id: 'x'\n  properties: { allow: false }", ["id: is read-only"]),
    ],
)
def test_checker_reports_each_kind_of_mismatch(body: str, expected: list[str], tmp_path: Path) -> None:
    source = (
        "resource p 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {\n"
        f"  name: 'ftp'\n  {body}\n}}\n"
    )
    found = _check_source(source, tmp_path)
    assert len(found) == len(expected), found
    for message, fragment in zip(found, expected, strict=True):
        assert fragment in message


def test_checker_reports_required_enum_and_discriminator(tmp_path: Path) -> None:
    source = """
var destination = {
  endpointType: 'AzureFunctions'
  properties: {}
}
resource s 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  name: 'x'
  properties: {
    destination: destination
    eventDeliverySchema: 'AnySchemaGoes'
    retryPolicy: { maxDeliveryAttempts: 'ten' }
  }
}
resource q 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  name: 'y'
  properties: { category: 'c', query: 'T' }
}
resource c 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  name: 'probe'
  properties: { publicAccess: 'none' }
}
"""
    found = _check_source(source, tmp_path)
    text_found = "\n".join(found)
    assert "properties.destination.endpointType: 'AzureFunctions' is not one of" in text_found
    assert "properties.retryPolicy.maxDeliveryAttempts: expected an integer" in text_found
    assert "properties.displayName: is required" in text_found
    assert "properties.publicAccess: 'none' is not one of ['Container', 'Blob', 'None']" in text_found
    # eventDeliverySchema is an open set (modelAsString): any string passes, as it does in Bicep.
    assert len(found) == 4, found


def test_overrides_are_applied_to_infra() -> None:
    """location on basicPublishingCredentialsPolicies is unknown to the generated data but required by ARM."""
    if "Microsoft.Web/sites/basicPublishingCredentialsPolicies" not in overrides():
        pytest.skip("overrides.json has no entry for basicPublishingCredentialsPolicies")
    policies = [r for r in all_resources() if r.type == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"]
    assert policies
    for policy in policies:
        assert mismatches_of(policy) == []
