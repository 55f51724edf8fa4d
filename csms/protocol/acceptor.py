"""A fast yes for valid OCPP payloads, compiled from the same JSON schemas.

``fastjsonschema``'s generated code is general: every object copies its keys into a set,
and an enum is a chain of ``isinstance(x, str) and x == "..."`` tests (22 of them for a
1.6 measurand). A 1.6 MeterValues of four samples takes ~25 us there. This module
compiles the keywords the OCPA schemas use into tighter Python (a dispatch on each key,
``type(x) is`` tests, enums as frozensets): the same payload takes a few microseconds.

It only says yes or no. A payload it accepts is valid; for one it refuses, the caller
runs the full validator, which finds the rule that failed and names it in the CALLERROR
(and which has the last word, should this be stricter somewhere). So an error here can
only cost speed, never a verdict, provided the acceptor never accepts what the schema
refuses: ``tests/unit/csms/protocol/test_acceptor.py`` checks that on every schema of
both versions, against real and mutated payloads.

It reads the types as ``fastjsonschema`` does for the schema's draft (from draft 6 on,
``1.0`` is an integer), but exactly (``type(x) is int``: what a JSON parser produces),
not their subclasses. A schema using
anything outside the handled set (``format: uri``, ``multipleOf``, tuple ``items``, an
unknown keyword) gets no acceptor and always runs the full validator.

Like ``fastjsonschema`` (``use_default``), an accepted payload gains the schema's
``default`` for each absent property that declares one, so both paths give the
translation layer the same dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Acceptor", "Unsupported", "compile_acceptor"]

Acceptor = Callable[[dict[str, Any]], bool]

# Keywords that do not constrain a value.
_ANNOTATIONS = frozenset(
    {"description", "javaType", "comment", "title", "$schema", "$id", "definitions",
     "default", "tsEnumNames"})
# What each type's checks cover. ``additionalProperties`` constrains objects only: the 1.6
# schemas also put it on string enums, where it means nothing.
_HANDLED = {
    "string": frozenset({"type", "maxLength", "minLength", "enum", "format",
                         "additionalProperties"}),
    "integer": frozenset({"type", "minimum", "maximum", "enum", "additionalProperties"}),
    "number": frozenset({"type", "minimum", "maximum", "additionalProperties"}),
    "boolean": frozenset({"type", "additionalProperties"}),
    "array": frozenset({"type", "items", "minItems", "maxItems", "additionalItems",
                        "additionalProperties"}),
    "object": frozenset({"type", "properties", "required", "additionalProperties"}),
}


class Unsupported(Exception):
    """The schema uses something this compiler does not handle."""


def _literal(value: Any, types: tuple[type, ...]) -> str:
    """``value`` as Python source, for a scalar of ``types`` that repr() writes back."""
    if type(value) not in types or (type(value) is float and not math.isfinite(value)):
        raise Unsupported(f"value {value!r}")
    return repr(value)


def _lengths(schema: Mapping[str, Any], var: str, keys: tuple[str, str]) -> list[str]:
    """The conditions that ``len(var)`` breaks the (maximum, minimum) keywords ``keys``."""
    out = []
    for key, op in zip(keys, (">", "<"), strict=True):
        if key in schema:
            out.append(f"len({var}) {op} {_literal(schema[key], (int,))}")
    return out


def _kind(schema: Mapping[str, Any]) -> str | None:
    """The type ``schema`` constrains (None: it constrains nothing), once every keyword
    in it is known to be handled."""
    if not set(schema) - _ANNOTATIONS:
        return None
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _HANDLED:
        raise Unsupported(f"type {kind!r}")
    extra = set(schema) - _ANNOTATIONS - _HANDLED[kind]
    if extra:
        raise Unsupported(f"keywords {sorted(extra)}")
    return kind


class _Compiler:
    def __init__(self, root: Mapping[str, Any],
                 date_time: Callable[[Any], bool] | None) -> None:
        self.root = root
        self.date_time = date_time
        self.float_integers = "draft-04" not in str(root.get("$schema", ""))
        self.names: dict[str, Any] = {"date_time": date_time}
        self.functions: list[str] = []
        self.by_ref: dict[str, str] = {}
        self.counter = 0

    def _name(self, prefix: str, value: Any) -> str:
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.names[name] = value
        return name

    def resolve(self, schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
        ref = schema.get("$ref")
        if ref is None:
            return schema, None
        if set(schema) - _ANNOTATIONS - {"$ref"}:
            raise Unsupported("keywords beside $ref")
        if not isinstance(ref, str) or not ref.startswith("#/definitions/"):
            raise Unsupported(f"$ref {ref!r}")
        target = self.root.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
        if not isinstance(target, Mapping):
            raise Unsupported(f"$ref {ref!r} not found")
        return target, ref

    def checks(self, schema: Mapping[str, Any], var: str, indent: str) -> list[str]:
        """Lines that ``return False`` unless ``var`` is valid under ``schema``."""
        schema, ref = self.resolve(schema)
        kind = _kind(schema)
        if kind is None:
            return []  # any value (2.0.1 DataTransfer's data)
        if kind == "object":
            return [f"{indent}if not {self.object_function(schema, ref)}({var}): return False"]
        if kind == "array":
            return self.array_checks(schema, var, indent)
        conditions = self.scalar_conditions(kind, schema, var)
        return [f"{indent}if {' or '.join(conditions)}: return False"]

    def scalar_conditions(self, kind: str, schema: Mapping[str, Any], var: str) -> list[str]:
        if kind == "boolean":
            return [f"type({var}) is not bool"]
        if kind == "string":
            out = [f"type({var}) is not str",
                   *_lengths(schema, var, ("maxLength", "minLength")),
                   *self.enum(schema, var, str)]
            if "format" in schema:
                if schema["format"] != "date-time":
                    raise Unsupported(f"format {schema['format']!r}")
                if self.date_time is not None:
                    out.append(f"not date_time({var})")
            return out
        if kind == "integer":
            if self.float_integers:  # draft 6 on: 1.0 is an integer
                out = [f"(type({var}) is not int and (type({var}) is not float"
                       f" or not {var}.is_integer()))"]
            else:
                out = [f"type({var}) is not int"]
            out += self.enum(schema, var, int)
        else:  # number
            out = [f"(type({var}) is not int and type({var}) is not float)"]
        for key, op in (("minimum", "<"), ("maximum", ">")):
            if key in schema:
                out.append(f"{var} {op} {_literal(schema[key], (int, float))}")
        return out

    def enum(self, schema: Mapping[str, Any], var: str, kind: type) -> list[str]:
        if "enum" not in schema:
            return []
        values = schema["enum"]
        if not isinstance(values, list) or not all(type(v) is kind for v in values):
            raise Unsupported(f"enum of other than {kind.__name__}")
        return [f"{var} not in {self._name('enum', frozenset(values))}"]

    def array_checks(self, schema: Mapping[str, Any], var: str, indent: str) -> list[str]:
        conditions = [f"type({var}) is not list", *_lengths(schema, var, ("maxItems", "minItems"))]
        lines = [f"{indent}if {' or '.join(conditions)}: return False"]
        items = schema.get("items")
        if items is None:
            return lines
        if not isinstance(items, Mapping):
            raise Unsupported("tuple items")  # only then would additionalItems apply
        self.counter += 1
        item = f"i{self.counter}"
        body = self.checks(items, item, indent + "    ")
        return [*lines, f"{indent}for {item} in {var}:", *body]

    def object_function(self, schema: Mapping[str, Any], ref: str | None) -> str:
        if ref is not None and ref in self.by_ref:
            return self.by_ref[ref]
        self.counter += 1
        name = f"obj{self.counter}"
        if ref is not None:
            self.by_ref[ref] = name  # before the body: a definition may refer to itself
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        closed = schema.get("additionalProperties", True)
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            raise Unsupported("properties")
        if closed not in (True, False):
            raise Unsupported("additionalProperties as a schema")
        lines = [f"def {name}(d):", "    if type(d) is not dict: return False"]
        if 0 < len(required) <= 6:  # a test per key: a third of a set comparison's time
            missing = " or ".join(f"{key!r} not in d" for key in required)
            lines.append(f"    if {missing}: return False")
        elif required:
            lines.append(f"    if not d.keys() >= {self._name('required', frozenset(required))}:"
                         " return False")
        if properties:
            lines.append("    for k, v in d.items():")
            word = "if"
            for key, sub in properties.items():
                if not isinstance(sub, Mapping):
                    raise Unsupported(f"property {key!r}")
                lines.append(f"        {word} k == {key!r}:")
                lines.extend(self.checks(sub, "v", "            ") or ["            pass"])
                word = "elif"
            if closed is False:
                lines.append("        else: return False")
        elif closed is False:
            lines.append("    if d: return False")
        for key, sub in properties.items():
            if isinstance(sub, Mapping) and "default" in sub:
                default = _literal(sub["default"], (str, int, float, bool))
                lines.append(f"    if {key!r} not in d: d[{key!r}] = {default}")
        lines.append("    return True")
        self.functions.append("\n".join(lines))
        return name


def compile_acceptor(schema: Mapping[str, Any],
                     date_time: Callable[[Any], bool] | None) -> Acceptor:
    """An acceptor for ``schema`` (an object schema), with ``date_time`` as the check of
    ``format: date-time`` (None: any string). Raises :class:`Unsupported` where it cannot
    be compiled."""
    compiler = _Compiler(schema, date_time)
    top, _ = compiler.resolve(schema)
    if _kind(top) != "object":
        raise Unsupported("a payload schema that is not an object")
    entry = compiler.object_function(top, None)
    namespace = dict(compiler.names)
    # Only our own text runs: keys and defaults go in through repr(), limits are checked
    # numbers, enums and required sets are objects in the namespace.
    exec("\n\n".join(compiler.functions), namespace)
    accept: Acceptor = namespace[entry]
    return accept
