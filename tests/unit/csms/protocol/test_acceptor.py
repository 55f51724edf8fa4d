"""The fast acceptor against the full validator, on every schema of both versions.

The acceptor may only say yes to what ``fastjsonschema`` says yes to, or a station could
get an invalid payload stored. Each compiled schema gets random valid payloads and,
from each, mutations at every depth: keys dropped and added, values swapped for other
JSON types, numbers and strings just past their limits, enum values off by a letter,
odd times. The two verdicts must be equal (the acceptor is not allowed to be slower
than needed either: a valid payload it refused would fall to the slow path), and an
accepted payload must come out as the full validator leaves it (its defaults added).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import fastjsonschema
import pytest

from csms.protocol import Fault, OcppError, OcppVersion, Validator
from csms.protocol.acceptor import Unsupported, compile_acceptor
from csms.protocol.timestamps import is_readable
from csms.protocol.validation import _compiled, _schema_file, _schemas_dir, known_actions

# Schemas that use what the acceptor does not compile (multipleOf, format uri); they
# always take the full validator.
NOT_COMPILED = {
    ("1.6", "GetCompositeSchedule", "response"), ("1.6", "GetDiagnostics", "request"),
    ("1.6", "RemoteStartTransaction", "request"), ("1.6", "SetChargingProfile", "request"),
    ("1.6", "UpdateFirmware", "request"),
}
HOT = {  # what a station sends all day: these must have an acceptor
    "1.6": ["Authorize", "BootNotification", "Heartbeat", "MeterValues", "StartTransaction",
            "StatusNotification", "StopTransaction"],
    "2.0.1": ["Authorize", "BootNotification", "Heartbeat", "MeterValues",
              "StatusNotification", "TransactionEvent", "NotifyReport", "NotifyEvent"],
}

TIMES = ["2026-03-01T10:01:00Z", "2026-03-01T10:01:00.364+0000", "2026-03-01T11:01:00+01:00",
         "2026-03-01T10:01:00.123456789Z", "2026-03-01T10:01:00", "2026-03-01t10:01:00z",
         "2024-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-03-01T10:01:00+25:00",
         "20260301T100100Z", "yesterday", "", "2026-03-01T10:01:00Z "]
EDGE: list[Any] = [None, True, False, 0, -1, 1, 1.0, 1.5, -0.0, 2**31, 2**63, 2**64, 2**70,
                   -(2**70), 1e300, "", "x", "1", "é€😀", [], [None], {}, {"a": 1}]


VERSIONS = {"1.6": OcppVersion.V16, "2.0.1": OcppVersion.V201}


def schemas() -> Iterator[tuple[str, str, str]]:
    for name, version in VERSIONS.items():
        for action in sorted(known_actions(version)):
            for kind in ("request", "response"):
                if _schemas_dir(version).joinpath(_schema_file(version, action, kind)).is_file():
                    yield name, action, kind


def load(version: str, action: str, kind: str) -> dict[str, Any]:
    v = VERSIONS[version]
    schema: dict[str, Any] = json.loads(
        _schemas_dir(v).joinpath(_schema_file(v, action, kind)).read_text("utf-8"))
    schema.pop("$id", None)
    return schema


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["definitions"][schema["$ref"].removeprefix("#/definitions/")]
    return schema


def instance(schema: dict[str, Any], root: dict[str, Any], rnd: random.Random,
             depth: int = 0) -> Any:
    """A random value valid under ``schema`` (times: any of TIMES, valid or not)."""
    schema = resolve(schema, root)
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return rnd.choice(TIMES[:7])
        if schema.get("format") == "uri":
            return "https://example.com/f"
        top = min(schema.get("maxLength", 40), 40)
        size = rnd.choice([schema.get("minLength", 0), top, rnd.randint(0, top)])
        return "".join(rnd.choice("aZ09-_.é€😀 ") for _ in range(size))
    if kind == "integer":
        return rnd.randint(int(schema.get("minimum", -1000)), int(schema.get("maximum", 10**6)))
    if kind == "number":
        return rnd.choice([0, 7, 0.5, 1e3, -2.25, 2114135.6])
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 3), low + 3)
        return [instance(schema["items"], root, rnd, depth + 1)
                for _ in range(rnd.randint(low, high))]
    if kind == "object":
        out = {}
        required = schema.get("required", [])
        for key, sub in schema.get("properties", {}).items():
            if key in required or (depth < 5 and rnd.random() < 0.6):
                out[key] = instance(sub, root, rnd, depth + 1)
        return out
    return rnd.choice(EDGE)  # no type: anything


def positions(value: Any, schema: dict[str, Any], root: dict[str, Any],
              path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(path, schema of the value there) for every value below ``value``."""
    schema = resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in value.items():
            sub_schema = props.get(key, {})
            yield (*path, key), resolve(sub_schema, root)
            yield from positions(sub, sub_schema, root, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield (*path, i), resolve(schema["items"], root)
            yield from positions(sub, schema["items"], root, (*path, i))


def near(schema: dict[str, Any]) -> list[Any]:
    """Values just inside and just outside ``schema``'s limits."""
    out: list[Any] = []
    for value in schema.get("enum", []):
        if isinstance(value, str):
            out += [value.lower(), value + " ", value[:-1]]
    if "maxLength" in schema:
        out += ["y" * schema["maxLength"], "y" * (schema["maxLength"] + 1),
                "é" * (schema["maxLength"] + 1)]
    for key, step in (("minimum", -1), ("maximum", 1)):
        if key in schema:
            out += [schema[key], schema[key] + step, float(schema[key])]
    if schema.get("format") == "date-time":
        out += TIMES
    if "minItems" in schema:
        out.append([])
    return out


def mutations(payload: dict[str, Any], schema: dict[str, Any], rnd: random.Random
              ) -> Iterator[dict[str, Any]]:
    yield {**payload, "unknownKey": 1}
    places = list(positions(payload, schema, schema))
    for path, sub in rnd.sample(places, min(len(places), 25)):
        for _ in range(2):
            mutant = copy.deepcopy(payload)
            container: Any = mutant
            for key in path[:-1]:
                container = container[key]
            key = path[-1]
            choice = rnd.random()
            if choice < 0.15 and isinstance(container, dict):
                del container[key]
            elif choice < 0.25 and isinstance(container[key], dict):
                container[key]["unknownKey"] = "x"
            elif choice < 0.35 and isinstance(container[key], list) and container[key]:
                container[key].extend(copy.deepcopy(container[key]) * 50)
            else:
                container[key] = rnd.choice(near(sub) + EDGE)
            yield mutant


def full_verdict(validate: Any, payload: dict[str, Any]) -> bool:
    try:
        validate(payload)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


@pytest.mark.parametrize(("version", "action", "kind"), list(schemas()))
def test_the_acceptor_agrees_with_the_full_validator(version: str, action: str,
                                                     kind: str) -> None:
    accept, validate = _compiled(VERSIONS[version], action, kind)
    if (version, action, kind) in NOT_COMPILED:
        assert accept is None
        return
    assert accept is not None
    schema = load(version, action, kind)
    rnd = random.Random(f"{version}/{action}/{kind}")
    checked = accepted = 0
    for _ in range(10):
        valid = json.loads(json.dumps(instance(schema, schema, rnd)))
        for payload in [valid, *mutations(valid, schema, rnd)]:
            text = json.dumps(payload)  # as a parser gives it
            mine, theirs = json.loads(text), json.loads(text)
            verdict = accept(mine)
            assert verdict == full_verdict(validate, theirs), (action, kind, payload)
            if verdict:
                assert mine == theirs  # the same defaults added
                accepted += 1
            checked += 1
    assert accepted and accepted < checked  # both verdicts were exercised


def test_every_schema_but_the_listed_compiles() -> None:
    missing = set()
    for version, action, kind in schemas():
        try:
            compile_acceptor(load(version, action, kind), is_readable)
        except Unsupported:
            missing.add((version, action, kind))
    assert missing == NOT_COMPILED
    for version, actions in HOT.items():
        for action in actions:
            assert _compiled(VERSIONS[version], action, "request")[0] is not None


KEBA_STARTED = {  # a KEBA P30's 2.0.1 start as its operator logged it (ocmf_vectors)
    "eventType": "Started", "timestamp": "2025-08-21T07:03:33.373+0000",
    "triggerReason": "Authorized", "seqNo": 0,
    "transactionInfo": {"transactionId": "28881628250821070333100549825004",
                        "chargingState": "SuspendedEV"},
    "meterValue": [{"sampledValue": [{"value": 2114135.6, "context": "Transaction.Begin"}],
                    "timestamp": "2025-08-21T07:03:36.481+0000"}],
    "offline": False, "evse": {"id": 1, "connectorId": 1},
    "idToken": {"idToken": "3A5AA876", "type": "ISO14443"},
}
GROWATT_METER = {  # a time without an offset, as Growatt stations send it
    "connectorId": 1, "transactionId": 7,
    "meterValue": [{"timestamp": "2026-03-01T10:01:00",
                    "sampledValue": [{"value": "1200", "measurand":
                                      "Energy.Active.Import.Register", "unit": "Wh"}]}],
}


@pytest.mark.parametrize(("version", "action", "payload", "valid"), [
    ("2.0.1", "TransactionEvent", KEBA_STARTED, True),
    ("2.0.1", "TransactionEvent", {**KEBA_STARTED, "seqNo": True}, False),
    ("2.0.1", "TransactionEvent", {**KEBA_STARTED, "evse": {"id": 1, "connectorId": "1"}},
     False),
    ("1.6", "MeterValues", GROWATT_METER, True),
    ("1.6", "MeterValues", {**GROWATT_METER, "transactionId": 7.0}, False),
    ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                   "status": "Available", "timestamp": "2026-03-01T10:01:00"},
     True),
    ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                   "status": "Available", "timestamp": "yesterday"}, False),
    ("1.6", "StartTransaction", {"connectorId": 1, "idTag": "x" * 21, "meterStart": 0,
                                 "timestamp": "2026-03-01T10:01:00Z"}, False),
])
def test_real_and_hostile_payloads(version: str, action: str, payload: dict[str, Any],
                                   valid: bool) -> None:
    accept, validate = _compiled(VERSIONS[version], action, "request")
    assert accept is not None
    assert accept(copy.deepcopy(payload)) is valid
    assert full_verdict(validate, copy.deepcopy(payload)) is valid


def test_a_refused_payload_still_names_the_rule_it_broke() -> None:
    validator = Validator(OcppVersion.V16)
    bad = {**GROWATT_METER, "connectorId": "1"}
    with pytest.raises(OcppError) as caught:
        validator.validate("MeterValues", bad)
    assert caught.value.fault is Fault.TYPE_CONSTRAINT
    assert "connectorId" in str(caught.value)


def test_defaults_are_added_as_the_full_validator_adds_them() -> None:
    with_default = [(v, a, k) for v, a, k in schemas()
                    if '"default"' in json.dumps(load(v, a, k))
                    and (v, a, k) not in NOT_COMPILED]
    assert with_default  # the schemas do declare defaults
    for version, action, kind in with_default:
        accept, validate = _compiled(VERSIONS[version], action, kind)
        schema = load(version, action, kind)
        rnd = random.Random(action)
        for _ in range(20):
            payload = json.loads(json.dumps(instance(schema, schema, rnd)))
            mine, theirs = copy.deepcopy(payload), copy.deepcopy(payload)
            assert accept is not None and accept(mine) == full_verdict(validate, theirs)
            assert mine == theirs
