"""What a user needs to write an event body, generated from the models (PROCESS.md §3, §5).

- ``json_schema(name)``: the JSON Schema of an event body (``kbflow schema EVENT``) or of
  the case start (``name == "case"``).
- ``template(name)``: a filled-in fictional body that is accepted as is in the event's
  phase (``kbflow template EVENT``), taken from the example scenarios in ``examples/``.
- ``events_table()`` and ``field_reference()``: the README's events table and event
  reference, written into its marked regions by ``render_readme``.

Regenerate the README with ``make docs`` (``python -m kbflow.reference --write README.md``);
``--check README.md`` exits 1 when the README differs (the tests run the same check).

Everything here is pure except ``example_bodies`` (reads ``examples/*.json``) and ``main``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kbflow.case import RULES, Rule
from kbflow.events import MADE_BY_KBFLOW, REQUIRED_WHEN_SENT, CaseStart
from kbflow.process import ITEM_MEANINGS, PROCESS_TABLE, Item

#: The pseudo event name of the case start (``kbflow start``).
CASE = "case"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


class UnknownEventError(ValueError):
    """A name that is neither an event nor ``case``; the message lists the known names."""


def _events() -> Mapping[str, Rule]:
    """Every event kbflow accepts, by name, with its rule, in the order of the case rules
    (``kbflow.case.RULES``, PROCESS.md §3 order): the one place this module reads them."""
    return {event.value: rule for event, rule in RULES.items()}


def names() -> list[str]:
    """``case`` and every event name."""
    return [CASE, *_events()]


def model_of(name: str) -> type[BaseModel]:
    """The model of event ``name``'s body, or ``CaseStart`` for ``case``.

    Raises:
        UnknownEventError: ``name`` is neither.
    """
    if name == CASE:
        return CaseStart
    spec = _events().get(name)
    if spec is None:
        raise UnknownEventError(f"event: unknown event '{name}'; known: {', '.join(names())}")
    return spec.model


# ---- JSON Schema -------------------------------------------------------------------------

#: Descriptions of fields whose model gives none and that are not §5 items (the items'
#: meanings come from ``kbflow.process.ITEM_MEANINGS``). Better moved into the models.
_FIELD_NOTES: dict[str, str] = {
    "investigate": "true: the RvdK investigates; false: the case closes",
    "decision": "Rejection of an application, or withdrawal of a right of residence",
    "measure": "What the court ordered; a custody termination or a refusal closes the case",
    "extended": "Whether the judge extended the OTS",
    "persons": "The persons the case concerns, at least one child",
    "reporter": "Party code of the reporter",
}


def _description_of(field: str) -> str | None:
    if field in _FIELD_NOTES:
        return _FIELD_NOTES[field]
    if field in {item.value for item in Item}:
        meaning = ITEM_MEANINGS[Item(field)]
        return meaning[0].upper() + meaning[1:]
    return None


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of event ``name``'s body (``case``: the case start).

    pydantic's ``model_json_schema()`` of the model as a body is sent: without the fields
    kbflow fills in (``MADE_BY_KBFLOW``), with the fields it requires although the model,
    which also decodes older histories, does not (``REQUIRED_WHEN_SENT``), and with a
    description filled in for each field the model leaves undescribed (from the §5 item
    meanings).

    Raises:
        UnknownEventError: unknown name.
    """
    schema = model_of(name).model_json_schema()
    # The body as sent: what kbflow fills in is left out, what it requires is required.
    for field in MADE_BY_KBFLOW.get(name, ()):
        schema["properties"].pop(field, None)
        schema["required"] = [f for f in schema.get("required", []) if f != field]
    for field in REQUIRED_WHEN_SENT.get(name, ()):
        schema["required"] = [*schema.get("required", []), field]
        prop = schema["properties"][field]
        kinds = [kind for kind in prop.pop("anyOf", []) if kind.get("type") != "null"]
        if len(kinds) == 1:
            prop.update(kinds[0])
        prop.pop("default", None)
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for field, prop in definition.get("properties", {}).items():
            if "description" not in prop:
                description = _description_of(field)
                if description:
                    prop["description"] = description
    return schema


# ---- templates ---------------------------------------------------------------------------

#: Bodies of events that no example scenario sends.
_CURATED: dict[str, dict[str, Any]] = {
    "weighing": {
        "sender": "DTV",
        "idempotency_key": "dtv-weighing-0001",
        "weighing": {
            "necessary": True, "proportionate": True, "subsidiarity": True,
            "note": "Only the state of the departure procedure will be shared.",
            "by": "DTV-regie-5",
        },
    },
    "v_number_correction": {
        "sender": "IND",
        "idempotency_key": "ind-v-number-correction-0001",
        "v_number": [{"person": 0, "v_number": "0000000099"}],
    },
}


@cache
def example_bodies() -> dict[str, dict[str, Any]]:
    """One example body per event, from ``examples/*.json`` (plus ``_CURATED``), and the
    case start under ``case``. Of several bodies of one event the one with the most fields
    wins (the first on a tie), so a template shows as much as the examples do."""
    bodies: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        scenario = json.loads(path.read_text(encoding="utf-8"))
        bodies.setdefault(CASE, scenario["case"])
        for entry in scenario["events"]:
            best = bodies.get(entry["event"])
            if best is None or len(entry["body"]) > len(best):
                bodies[entry["event"]] = entry["body"]
    for name, body in _CURATED.items():
        bodies.setdefault(name, body)
    return bodies


def template(name: str, token: str | None = None) -> dict[str, Any]:
    """A fictional body of event ``name`` (``case``: a case start) that is accepted as is
    in the event's phase, with a fresh ``idempotency_key`` ``<sender>-<event>-<random>``
    if the body has one (``token`` replaces the random part).

    Raises:
        UnknownEventError: unknown name, or no example holds such a body.
    """
    model_of(name)
    body = example_bodies().get(name)
    if body is None:
        raise UnknownEventError(f"event: no example body of '{name}'")
    body = json.loads(json.dumps(body))  # a deep copy
    if "ruled_on" in model_of(name).model_fields:  # a ruling passed on the day it is given
        body.setdefault("ruled_on", dt.datetime.now(dt.UTC).date().isoformat())
    if "idempotency_key" in body:
        sender = str(body.get("sender") or body.get("reporter") or "kb").lower()
        body["idempotency_key"] = (
            f"{sender}-{name.replace('_', '-')}-{token or secrets.token_hex(4)}")
    return body


# ---- the README --------------------------------------------------------------------------

def _allowed_in(rule: Rule) -> str:
    """Where an event is allowed, read from its rule."""
    allowed = rule.allowed
    parts = [" or ".join(f"`{phase.value}`" for phase in allowed.phases)
             if len(allowed.phases) < 5 else "any open phase"]
    if allowed.awaited:
        parts.append("awaited from the sender")
    for name, values in (("advice cycle", allowed.advice_cycle),
                         ("extension cycle", allowed.extension_cycle)):
        if values:
            parts.append(f"{name} " + " or ".join(f"`{value.value}`" for value in values))
    if allowed.guard is not None:
        parts.append(f"`{allowed.guard.__name__}`")
    return ", ".join(parts)


def _effect(rule: Rule) -> str:
    """An event's named effect and the sub-states it sets."""
    text = f"`{rule.effect.__name__}`"
    if rule.sets:
        text += "; sets " + ", ".join(f"`{value.value}`" for value in rule.sets)
    return text


def _awaits(rule: Rule) -> str:
    """What an event awaits next."""
    return ", ".join(
        f"`{wait.event.value}` from {wait.party.value}"
        + (f" if `{wait.when.value}`" if wait.when is not None else "")
        for wait in rule.awaits) or "-"


_JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "true / false",
               "number": "number", "null": "null", "object": "object", "array": "array"}


def _bounds(low: object, high: object, unit: str = "") -> list[str]:
    """A schema's lower and upper bound as one limit ("1-200 characters", "at most 12")."""
    if low is not None and high is not None:
        return [f"{low}-{high}{unit}"]
    if high is not None:
        return [f"at most {high}{unit}"]
    if low is not None:
        return [f"at least {low}{unit}"]
    return []


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(model: type[BaseModel]) -> str:
    """A model's docstring as one Markdown paragraph, without its "Raises" section."""
    paragraphs = (model.__doc__ or "").split("\n\n")
    kept = [p for p in paragraphs if not p.strip().startswith("Raises")]
    return " ".join(" ".join(kept).split()).replace("``", "`")


def _senders(spec: Rule) -> str:
    return ", ".join(party.value for party in spec.senders)


def events_table() -> str:
    """The README's events table, one row per rule of ``kbflow.case.RULES``: event,
    sender, step, where it is allowed, its named effect (a function in kbflow/case.py)
    and what it awaits next."""
    rows = ["| event | sender | step | allowed in | effect | awaits next |",
            "|---|---|---|---|---|---|"]
    for name, spec in _events().items():
        step = str(int(spec.step)) if spec.step is not None else "-"
        rows.append(f"| [`{name}`](#event-{name}) | {_senders(spec)} | "
                    f"{step} | {_allowed_in(spec)} | {_effect(spec)} | {_awaits(spec)} |")
    return "\n".join(rows)


class _Objects:
    """The nested objects of all bodies, each named once by the first field holding it."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self.label: dict[str, str] = {}
        self.choice_label: dict[str, str] = {}

    def add(self, schema: Mapping[str, Any]) -> None:
        for name, definition in schema.get("$defs", {}).items():
            self.defs.setdefault(name, definition)
        self._name_fields(schema)
        for definition in schema.get("$defs", {}).values():
            self._name_fields(definition)

    def _name_fields(self, definition: Mapping[str, Any]) -> None:
        for field, prop in definition.get("properties", {}).items():
            ref, many = _ref_of(prop)
            if ref and "properties" in self.defs.get(ref, {}):
                self.label.setdefault(ref, f"{field}[]" if many else field)
            for option in _options(_non_null(prop).get("items", prop)):
                # an object that is one choice of several (a text or a DocumentRef) is
                # named by a field that holds it alone, if any
                ref, _ = _ref_of(option)
                if ref and "properties" in self.defs.get(ref, {}):
                    self.choice_label.setdefault(ref, field)

    def link(self, ref: str) -> str:
        label = self.label.get(ref) or self.choice_label[ref]
        return f"[object `{label}`](#object-{_anchor(label)})"

    def labels(self) -> dict[str, str]:
        """Every nested object's label, by ``$defs`` name."""
        return {**{ref: label for ref, label in self.choice_label.items()
                   if ref not in self.label}, **self.label}


def _anchor(label: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", label.lower())


def _ref_of(prop: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The ``$defs`` name a property refers to (directly or as array items), and whether
    it is an array of them."""
    prop = _non_null(prop)
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1], False
    if prop.get("type") == "array" and "$ref" in prop.get("items", {}):
        return str(prop["items"]["$ref"]).rsplit("/", 1)[-1], True
    return None, False


def _non_null(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    options = [p for p in prop.get("anyOf", ()) if p.get("type") != "null"]
    if len(options) == 1:
        merged = {k: v for k, v in prop.items() if k != "anyOf"}
        return {**options[0], **merged}
    return prop


def _options(prop: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The choices of a ``oneOf`` / ``anyOf`` of more than one kind (null left out)."""
    options = [p for p in prop.get("oneOf", prop.get("anyOf", ()))
               if p.get("type") != "null"]
    return options if len(options) > 1 else []


def _type_and_limits(prop: Mapping[str, Any], objects: _Objects) -> tuple[str, list[str]]:
    """A property's JSON type in words and its limits."""
    nullable = any(p.get("type") == "null" for p in prop.get("anyOf", ()))
    prop = _non_null(prop)
    limits: list[str] = []
    options = _options(prop)
    if options:
        kinds = []
        for option in options:
            kind, option_limits = _type_and_limits(option, objects)
            kinds.append(kind)
            limits += [f"{kind.split(' ', 1)[0]}: {limit}" if len(options) > 1 else limit
                       for limit in option_limits]
        return " or ".join(kinds) + (" or null" if nullable else ""), limits
    if "$ref" in prop:
        ref = str(prop["$ref"]).rsplit("/", 1)[-1]
        definition = objects.defs[ref]
        if "enum" in definition:
            kind = "string"
            limits.append("one of " + ", ".join(f"`{v}`" for v in definition["enum"]))
        else:
            kind = objects.link(ref)
    elif prop.get("type") == "array":
        item_kind, item_limits = _type_and_limits(prop.get("items", {}), objects)
        kind = f"array of {item_kind}"
        if "minItems" in prop:
            limits.append(f"at least {prop['minItems']} item{'s' * (prop['minItems'] != 1)}")
        if "maxItems" in prop:
            limits.append(f"at most {prop['maxItems']} items")
        limits += [f"each {limit}" for limit in item_limits]
    else:
        kind = _JSON_TYPES.get(str(prop.get("type")), "any JSON value")
        if prop.get("format") == "date":
            kind = "string (date `YYYY-MM-DD`)"
        elif prop.get("format") == "date-time":
            kind = "string (date-time, ISO 8601 with zone)"
        if "enum" in prop:
            limits.append("one of " + ", ".join(f"`{v}`" for v in prop["enum"]))
        if "const" in prop:
            limits.append(f"`{prop['const']}`")
        limits += _bounds(prop.get("minLength"), prop.get("maxLength"), " characters")
        if "pattern" in prop:
            limits.append(f"pattern `{prop['pattern']}`")
        limits += _bounds(prop.get("minimum"), prop.get("maximum"))
    if nullable:
        kind += " or null"
    return kind, limits


def _field_rows(definition: Mapping[str, Any], objects: _Objects,
                senders: str | None = None) -> list[str]:
    rows = ["| field | type | required | limits | description |", "|---|---|---|---|---|"]
    required = set(definition.get("required", ()))
    for field, prop in definition.get("properties", {}).items():
        kind, limits = _type_and_limits(prop, objects)
        if field == "sender" and senders:
            limits = [f"one of {', '.join(f'`{s}`' for s in senders.split(', '))}"]
        rows.append(f"| `{field}` | {_cell(kind)} | {'yes' if field in required else 'no'} | "
                    f"{_cell('; '.join(limits)) or '-'} | "
                    f"{_cell(prop.get('description', '-'))} |")
    return rows


def field_reference() -> str:
    """The README's event reference: per event and for the case start every field, its
    JSON type, whether it is required, its limits and its description; each nested
    object spelled out once."""
    objects = _Objects()
    schemas = {name: json_schema(name) for name in names()}
    for schema in schemas.values():
        objects.add(schema)
    out: list[str] = []
    for name, schema in schemas.items():
        if name == CASE:
            out += ["#### Case start (`kbflow start`)", "", _doc(CaseStart), ""]
            out += _field_rows(schema, objects)
        else:
            spec = _events()[name]
            step = f"step {int(spec.step)}" if spec.step is not None else "no step"
            title = f" ({PROCESS_TABLE[spec.step].title})" if spec.step is not None else ""
            out += [f"#### Event `{name}`", "",
                    f"Sent by {_senders(spec)}; {step}{title}. {_doc(spec.model)}", ""]
            out += _field_rows(schema, objects, _senders(spec))
        out += ["", f"`kbflow schema {name}` prints its JSON Schema, `kbflow template {name}` "
                    "an example.", ""]
    for ref, label in objects.labels().items():
        definition = objects.defs[ref]
        out += [f"#### Object `{label}`", "", _doc_of(definition), ""]
        out += _field_rows(definition, objects)
        out += [""]
    return "\n".join(out).rstrip()


def _doc_of(definition: Mapping[str, Any]) -> str:
    return " ".join(str(definition.get("description", "")).split()).replace("``", "`")


#: The generated regions of the README, by marker name.
def _regions() -> dict[str, str]:
    return {"events": events_table(), "event-reference": field_reference()}


def render_readme(text: str) -> str:
    """``text`` (the README) with every generated region replaced by what the models make.

    Raises:
        ValueError: a region's BEGIN or END marker is missing.
    """
    for region, content in _regions().items():
        begin, end = f"<!-- BEGIN generated: {region} -->", f"<!-- END generated: {region} -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"README: no region '{region}' ({begin} … {end})")
        text = (text[: start + len(begin)] + "\n" + content + "\n" + text[stop:])
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kbflow.reference [--write README.md | --check README.md]``; without an
    option it prints the generated regions. Exit 1 when ``--check`` finds a difference."""
    parser = argparse.ArgumentParser(prog="python -m kbflow.reference", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="README", help="rewrite its regions")
    group.add_argument("--check", type=Path, metavar="README", help="exit 1 if out of date")
    args = parser.parse_args(argv)
    if args.write is None and args.check is None:
        for content in _regions().values():
            print(content, end="\n\n")
        return 0
    path: Path = args.write or args.check
    text = path.read_text(encoding="utf-8")
    rendered = render_readme(text)
    if args.check is not None:
        if rendered != text:
            print(f"{path}: generated regions are out of date; run `make docs`",
                  file=sys.stderr)
            return 1
        return 0
    if rendered != text:
        path.write_text(rendered, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
