"""Case refs that no person chooses (``kbflow/case_refs.py``, issue 6 finding 3), the case
start's plausibility (finding 7, start part) and the CLI's reading of case starts.

kbflow makes every ref; its check character catches every single mistyped character and
every swap of two adjacent ones; refs of cases started before the check character still
address their cases; a ref a user writes into a start document is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from kbflow import case_refs
from kbflow.case_refs import ALPHABET, CaseRefError, check_case_ref, derived_case_ref
from kbflow.events import CaseStart, subject_name
from kbflow.items import Role
from kbflow.scenario import EXAMPLES_DIR, Scenario
from starter import inputs
from tests import factories as f

KEY = bytes(range(32))
VOWELS = set("AEIOUY")
LOOK_ALIKES = ["0OQD", "1IL", "2Z", "5S", "6G", "8B", "UV"]


def _sample(count: int = 300) -> list[str]:
    return [case_refs.new_case_ref(dt.date(2026, 12, 1)) for _ in range(count)]


# ---- format -------------------------------------------------------------------------------


def test_a_new_ref_has_the_format() -> None:
    for ref in _sample():
        assert re.fullmatch(rf"KB-2026-[{ALPHABET}]{{8}}-[{ALPHABET}]", ref), ref
        assert check_case_ref(ref) == ref


def test_the_alphabet_has_no_vowels_and_no_look_alikes() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 19  # a prime: see the module docstring
    assert not VOWELS & set(ALPHABET)
    for group in LOOK_ALIKES:
        assert len(set(group) & set(ALPHABET)) <= 1, group


def test_new_refs_are_random() -> None:
    refs = _sample(1000)
    assert len(set(refs)) == len(refs)
    # every character of the alphabet turns up in every position (the sample is big enough)
    for position in range(8, 16):
        assert {ref[position] for ref in refs} == set(ALPHABET)


def test_a_ref_is_made_in_the_given_year() -> None:
    assert case_refs.new_case_ref(dt.date(2031, 1, 1)).startswith("KB-2031-")


# ---- the check character ------------------------------------------------------------------


def test_every_single_substitution_is_caught() -> None:
    for ref in _sample(60):
        for index in [*range(3, 7), *range(8, 16), 17]:  # the year, the body, the check
            for char in {*ALPHABET, *"0123456789"} - {ref[index]}:
                if index < 7 and not char.isdigit():
                    continue
                typo = ref[:index] + char + ref[index + 1:]
                # a character outside the alphabet is refused as such
                rule = ("check character does not match" if index < 7 or char in ALPHABET
                        else "no vowels, no look-alikes")
                with pytest.raises(CaseRefError, match=rule):
                    check_case_ref(typo)


def test_every_adjacent_transposition_is_caught() -> None:
    refs = _sample(300)
    # the sample holds neighbours of every pair of values, the weak spot of Luhn mod N
    # (first and last character of the alphabet) among them
    refs.append(derived_refs_with_neighbours(ALPHABET[0], ALPHABET[-1]))
    for ref in refs:
        for index in [3, 4, 5, *range(8, 15)]:
            if ref[index] == ref[index + 1]:
                continue
            swapped = ref[:index] + ref[index + 1] + ref[index] + ref[index + 2:]
            with pytest.raises(CaseRefError, match="check character does not match"):
                check_case_ref(swapped)
        # the last body character and the check character, across the dash
        body_end, check = ref[15], ref[17]
        if body_end != check:
            swapped = ref[:15] + check + "-" + body_end
            with pytest.raises(CaseRefError, match="check character does not match"):
                check_case_ref(swapped)


def derived_refs_with_neighbours(first: str, second: str) -> str:
    """A valid ref whose body holds ``first`` next to ``second``."""
    body = first + second + ALPHABET[3] * 6
    return f"KB-2026-{body}-{case_refs.check_character(2026, body)}"


def test_messages_name_the_rule_never_the_text() -> None:
    ref = _sample(1)[0]
    cases = {
        ref[:-1] + ("C" if ref[-1] != "C" else "H"): "check character does not match; mistyped?",
        "KB-2026-AYSE1985-X": "no vowels, no look-alikes",
        "KB-2026-DENBOSCH": "must look like",  # a legacy shape is not a new ref
        "kb2026fenna": "must look like",
        "": "must look like",
    }
    for text, rule in cases.items():
        with pytest.raises(CaseRefError) as error:
            check_case_ref(text)
        assert rule in str(error.value)
        assert str(error.value).startswith("case ref: ")
        assert not text or text not in str(error.value)
    assert issubclass(CaseRefError, ValueError)


def test_lower_case_is_read_as_upper_case() -> None:
    ref = _sample(1)[0]
    assert check_case_ref(ref.lower()) == ref


# ---- derived refs -------------------------------------------------------------------------


def test_a_derived_ref_depends_on_key_idempotency_key_and_year() -> None:
    ref = derived_case_ref(KEY, "vt-report-0001", 2026)
    assert check_case_ref(ref) == ref
    assert derived_case_ref(KEY, "vt-report-0001", 2026) == ref
    assert derived_case_ref(KEY, "vt-report-0002", 2026) != ref
    assert derived_case_ref(bytes(32), "vt-report-0001", 2026) != ref
    assert derived_case_ref(KEY, "vt-report-0001", 2027) == "KB-2027-" + ref[8:16] + "-" + \
        case_refs.check_character(2027, ref[8:16])
    assert "REPORT" not in ref and "0001" not in ref
    with pytest.raises(CaseRefError, match="32 bytes"):
        derived_case_ref(b"short", "vt-report-0001", 2026)


# ---- addressing (the CLI) -----------------------------------------------------------------


@pytest.mark.parametrize("legacy", ["KB-2026-REPLAY01", "KB-2026-7Q4M2XAB", "KB-2025-ABC123",
                                    "KB-2026-ABCDEF123456"])
def test_legacy_refs_still_address_their_cases(legacy: str) -> None:
    assert inputs.check_case_ref(legacy) == legacy
    with pytest.raises(CaseRefError, match="must look like"):
        check_case_ref(legacy)  # but kbflow never makes one


def test_the_refs_of_the_recorded_histories_address_and_decode() -> None:
    # tests/record_histories.py records example N as KB-2026-REPLAY0N; test_replay.py
    # decodes their CaseStart from the committed histories
    for number in range(1, 8):
        ref = f"KB-2026-REPLAY{number:02d}"
        assert inputs.check_case_ref(ref) == ref
        CaseStart.model_validate({**f.case_start().model_dump(), "case_ref": ref})


def test_addressing_refuses_a_mistyped_new_ref() -> None:
    ref = _sample(1)[0]
    typo = ref[:9] + ref[10] + ref[9] + ref[11:] if ref[9] != ref[10] else ref[:-1] + (
        "C" if ref[-1] != "C" else "H")
    with pytest.raises(inputs.InputError, match="check character does not match; mistyped"):
        inputs.check_case_ref(typo)
    for text in ("KB-2026-ayse", "kb-case-KB-2026-REPLAY01", "KB-26-ABCDEF"):
        with pytest.raises(inputs.InputError, match="case ref: must look like"):
            inputs.check_case_ref(text)


def test_the_model_accepts_new_and_legacy_refs_only() -> None:
    data = f.case_start().model_dump()
    for ref in [*_sample(5), "KB-2026-REPLAY01"]:
        assert CaseStart.model_validate({**data, "case_ref": ref}).case_ref == ref
    for ref in ["KB-2026-AYSE-1985", "KB-2026-ABCDEFGH-", "KB-2026-ABC", "kb-2026-abcdefgh"]:
        with pytest.raises(ValidationError, match="case_ref"):
            CaseStart.model_validate({**data, "case_ref": ref})


# ---- reading a start document (the CLI) ---------------------------------------------------


def _document(**changes: Any) -> dict[str, Any]:
    case = dict(Scenario.load(EXAMPLES_DIR / "03_ots_advice_requested.json").case)
    case.update(changes)
    return case


@pytest.mark.parametrize("ref", ["KB-2026-AYSE1985", "KB-2026-ZOE2016", "KB-2026-VUGHTER12",
                                 "KB-2026-DENBOSCH", "KB-2026-7K4M2XCH-R"])
def test_a_user_supplied_ref_is_refused(ref: str) -> None:
    with pytest.raises(inputs.InputError) as error:
        inputs.case_start(_document(case_ref=ref), source="case.json")
    assert str(error.value) == ("case.json: invalid case start: case_ref: kbflow generates case "
                                "refs; leave it out")
    with pytest.raises(inputs.InputError, match="case_ref: kbflow generates"):
        inputs.case_start({"title": "t", "case": _document(case_ref=ref)})


def test_a_start_document_needs_an_idempotency_key() -> None:
    document = _document()
    del document["idempotency_key"]
    with pytest.raises(inputs.InputError, match="idempotency_key: required"):
        inputs.case_start(document)
    with pytest.raises(inputs.InputError, match="idempotency_key"):
        inputs.case_start(_document(idempotency_key="short"))


def test_the_ref_comes_from_kbflow() -> None:
    fresh = inputs.case_start(_document())
    assert check_case_ref(fresh.case_ref) == fresh.case_ref
    derived = inputs.case_start(_document(), case_ref=lambda key: derived_case_ref(KEY, key, 2026))
    assert derived.case_ref == derived_case_ref(KEY, "vt-report-0003", 2026)
    assert derived.idempotency_key == "vt-report-0003"


def test_every_example_has_an_idempotency_key_and_no_ref() -> None:
    keys = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        case = Scenario.load(path).case
        assert "case_ref" not in case
        keys.append(inputs.case_start(case).idempotency_key)
    assert len(set(keys)) == len(keys)


def test_retention_days_is_a_json_integer() -> None:
    assert inputs.case_start(_document(retention_days=3)).retention_days == 3
    for value in ("3", 3.0, True):
        with pytest.raises(inputs.InputError, match="retention_days"):
            inputs.case_start(_document(retention_days=value))


def test_starts_recorded_without_an_idempotency_key_decode() -> None:
    data = f.case_start().model_dump(mode="json")
    data.pop("idempotency_key")
    assert CaseStart.model_validate_json(json.dumps(data)).idempotency_key is None


# ---- plausibility -------------------------------------------------------------------------

REPORTED = dt.date(2026, 12, 1)


def _persons(child_born: dt.date, parent_born: dt.date = dt.date(1990, 1, 1)) -> Any:
    return (f.CHILD.model_copy(update={"date_of_birth": child_born}),
            f.PARENT.model_copy(update={"date_of_birth": parent_born}))


def test_a_plausible_start() -> None:
    assert f.case_start(persons=_persons(dt.date(2014, 3, 9))).implausibility(REPORTED) is None
    # born today, and the day before the 18th birthday: still a child
    assert f.case_start(persons=_persons(REPORTED)).implausibility(REPORTED) is None
    assert f.case_start(persons=_persons(dt.date(2008, 12, 2))).implausibility(REPORTED) is None


def test_a_date_of_birth_in_the_future() -> None:
    start = f.case_start(persons=_persons(dt.date(2014, 3, 9), dt.date(2031, 5, 1)))
    assert start.implausibility(REPORTED) == "persons[1].date_of_birth: in the future"
    start = f.case_start(persons=_persons(REPORTED + dt.timedelta(days=1)))
    assert start.implausibility(REPORTED) == "persons[0].date_of_birth: in the future"


@pytest.mark.parametrize("born", [dt.date(1960, 4, 2), dt.date(2008, 12, 1)])
def test_a_child_of_18_or_older(born: dt.date) -> None:
    reason = f.case_start(persons=_persons(born)).implausibility(REPORTED)
    assert reason == "persons[0]: a child must be under 18 on the report date"
    assert str(born.year) not in reason


def test_a_child_born_on_29_february_turns_18_on_1_march() -> None:
    start = f.case_start(persons=_persons(dt.date(2008, 2, 29)))
    assert start.implausibility(dt.date(2026, 2, 28)) is None
    assert start.implausibility(dt.date(2026, 3, 1)) is not None


def test_validation_never_depends_on_today() -> None:
    # an adult "child" validates (old histories must replay); only implausibility says no
    start = f.case_start(persons=_persons(dt.date(1960, 4, 2)))
    assert CaseStart.model_validate(start.model_dump()) == start
    assert start.persons[0].role is Role.CHILD


# ---- names for pseudonyms -----------------------------------------------------------------


def test_subject_name_is_nfc_casefolded_and_collapsed() -> None:
    nfc, nfd = "Zoë  \u00c7a\u00e7a", "Zoe\u0308 C\u0327ac\u0327a"
    assert nfc != nfd
    assert subject_name(nfc) == subject_name(nfd) == "zoë çaça"
    for name in ("Fenna Fictief", "Ayşe Verzonnen", "Sem  VERZONNEN "):
        assert subject_name(name) == " ".join(name.casefold().split())  # as before
