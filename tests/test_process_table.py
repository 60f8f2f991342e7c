"""The process table (kbflow/process.py) against an independent reading of PROCESS.md §3 and §5.

The mappings below are typed in from PROCESS.md, not derived from the code: if the table
drifts from the protocol, these tests fail.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kbflow.case import RULES
from kbflow.events import Event
from kbflow.process import (
    PROCESS_TABLE,
    Item,
    Party,
    Step,
    legal_basis_of,
    processing_activity_id,
    reporters,
)

#: PROCESS.md §5, the "steps" column: item -> steps whose packets carry it.
SECTION_5_STEPS: dict[str, set[int]] = {
    "relaas": {1},
    "v_number": {3, 4, 5, 7, 8, 10},
    "known_to_sender": {3},
    "residence_status": {3},
    "procedure_history": {3, 4},
    "removal_date": {3},
    "departure_procedure": {3},
    "dossier_documents": {4},
    "court_request": {5},
    "goals": {5, 6},
    "means": {5, 6},
    "gi": {6},
    "court_ruling": {6, 8, 10},
    "advice_available": {7},
    "vv_application": {8, 10},
    "rvdk_report": {8, 10},
    "gi_report": {10},
    "return_perspective": {9, 11},
    "transferability": {9, 11},
    "handover_progress": {12},
}

#: PROCESS.md §5, last paragraph: the two step-3 packets.
STEP_3_IND = {"v_number", "known_to_sender", "residence_status", "procedure_history",
              "removal_date"}
STEP_3_DTV = {"v_number", "known_to_sender", "departure_procedure"}

#: PROCESS.md §3 "Flow": who sends in each step, and to whom.
SECTION_3_FLOWS: dict[int, dict[str, set[str]]] = {
    1: {"VT": {"RVDK"}, "COA": {"RVDK"}, "AVIM": {"RVDK"}, "IND": {"RVDK"}},
    2: {"RVDK": {"IND", "DTV"}},
    3: {"IND": {"RVDK"}, "DTV": {"RVDK"}},
    4: {"IND": {"DTV"}},
    5: {"RVDK": {"IND", "DTV"}},
    6: {"RVDK": {"IND", "DTV"}},
    7: {"IND": {"DTV"}, "DTV": {"IND"}},
    8: {"IND": {"DTV"}},
    9: {"DTV": {"IND"}},
    10: {"IND": {"DTV"}},
    11: {"DTV": {"IND"}},
    # Step 12: "DT&V, with the other parties involved" -- kbflow reads these as the GI
    # carrying out the OTS and the RvdK (documented choice in kbflow/process.py).
    12: {"DTV": {"GI", "RVDK"}},
}

#: PROCESS.md §3 "Systems" per step.
SECTION_3_SYSTEMS: dict[int, set[str]] = {
    1: {"KBPS"},
    2: {"KBPS", "ISTV", "INDIGO"},
    3: {"KBPS", "ISTV", "INDIGO"},
    4: {"ISTV", "INDIGO", "Ketensysteem"},
    5: {"KBPS", "ISTV", "INDIGO"},
    6: {"KBPS", "ISTV", "INDIGO"},
    7: {"ISTV", "INDIGO"},
    8: {"ISTV", "INDIGO", "Ketensysteem"},
    9: {"ISTV", "INDIGO", "Ketensysteem"},
    10: {"ISTV", "INDIGO", "Ketensysteem"},
    11: {"ISTV", "INDIGO", "Ketensysteem"},
    12: {"ISTV"},
}

#: PROCESS.md §4 leaves reply deadlines open for steps 3, 7, 9 and 11; kbflow sets them.
STEPS_WITH_REPLY_DEADLINE = {3, 7, 9, 11}


def test_every_step_is_in_the_table_with_flows() -> None:
    assert sorted(int(step) for step in PROCESS_TABLE) == list(range(1, 13))
    for step, spec in PROCESS_TABLE.items():
        assert spec.step is step
        assert spec.flows, f"step {int(step)} has no flows"
        assert spec.purpose and spec.seed_name and spec.title
        assert spec.systems


def test_section_5_vocabulary_is_the_item_enum() -> None:
    assert {item.value for item in Item} == set(SECTION_5_STEPS)


@pytest.mark.parametrize("step", list(Step), ids=lambda s: f"step{int(s)}")
def test_flow_items_are_in_the_vocabulary_and_never_persons(step: Step) -> None:
    for flow in PROCESS_TABLE[step].flows:
        names = {item.value for item in flow.items}
        assert names <= set(SECTION_5_STEPS)
        assert "persons" not in names  # base data travels in every body, not as an item


@pytest.mark.parametrize("item", list(SECTION_5_STEPS))
def test_section_5_steps_column_matches_the_table(item: str) -> None:
    steps_in_table = {int(step) for step, spec in PROCESS_TABLE.items()
                      if Item(item) in spec.items}
    assert steps_in_table == SECTION_5_STEPS[item]


@pytest.mark.parametrize("step", [6, 9, 11, 12, 1, 2])
def test_steps_without_v_number(step: int) -> None:
    assert Item.V_NUMBER not in PROCESS_TABLE[Step(step)].items


def test_step_2_shares_only_base_data() -> None:
    assert PROCESS_TABLE[Step.ANNOUNCE_INVESTIGATION].items == frozenset()


def test_step_3_ind_and_dtv_item_sets() -> None:
    spec = PROCESS_TABLE[Step.RESIDENCE_INFORMATION]
    assert {item.value for item in spec.flow_of(Party.IND).items} == STEP_3_IND
    assert {item.value for item in spec.flow_of(Party.DTV).items} == STEP_3_DTV


@pytest.mark.parametrize("step", sorted(SECTION_3_FLOWS))
def test_senders_and_recipients_match_section_3(step: int) -> None:
    spec = PROCESS_TABLE[Step(step)]
    table = {flow.sender.value: {r.value for r in flow.recipients} for flow in spec.flows}
    assert table == SECTION_3_FLOWS[step]
    assert len(spec.senders) == len(set(spec.senders)), "one flow per sender"
    for flow in spec.flows:
        assert flow.sender not in flow.recipients


@pytest.mark.parametrize("step", sorted(SECTION_3_SYSTEMS))
def test_systems_match_section_3(step: int) -> None:
    assert {s.value for s in PROCESS_TABLE[Step(step)].systems} == SECTION_3_SYSTEMS[step]


def test_flow_of_unknown_sender_raises() -> None:
    with pytest.raises(KeyError, match="step 6 has no flow from IND"):
        PROCESS_TABLE[Step.COURT_RULING].flow_of(Party.IND)


def test_reply_deadlines_only_where_a_party_answers() -> None:
    with_deadline = {int(step) for step, spec in PROCESS_TABLE.items()
                     if spec.reply_due is not None}
    assert with_deadline == STEPS_WITH_REPLY_DEADLINE
    for step in STEPS_WITH_REPLY_DEADLINE:
        due = PROCESS_TABLE[Step(step)].reply_due
        assert due is not None and due > timedelta(0)


def test_reporters_are_vt_and_the_urgent_reporters() -> None:
    assert set(reporters()) == {Party.VT, Party.COA, Party.AVIM, Party.IND}


@pytest.mark.parametrize("name", list(Event))
def test_event_senders_are_senders_of_their_step(name: Event) -> None:
    rule = RULES[name]
    assert rule.senders, f"{name} has no senders"
    if rule.step is not None:
        assert set(rule.senders) <= set(PROCESS_TABLE[rule.step].senders)


def test_events_cover_every_step_after_the_report() -> None:
    covered = {int(rule.step) for rule in RULES.values() if rule.step is not None}
    assert covered == set(range(2, 13))  # step 1 is the CaseStart


def test_processing_activity_ids_are_unique_per_step_and_sender() -> None:
    pairs = [(step, flow.sender) for step, spec in PROCESS_TABLE.items() for flow in spec.flows]
    ids = [processing_activity_id(step, sender) for step, sender in pairs]
    assert len(set(ids)) == len(ids)
    assert processing_activity_id(Step.COURT_RULING, Party.RVDK) == (
        f"urn:kbflow:processing-activity:step-06:RVDK:v{PROCESS_TABLE[Step.COURT_RULING].version}"
    )


def test_legal_basis_per_sender() -> None:
    assert "Burgerlijk Wetboek Boek 1" in legal_basis_of(Party.RVDK)
    for party in (Party.IND, Party.DTV):
        assert "Vreemdelingenwet art. 107" in legal_basis_of(party)
    for party in (Party.VT, Party.COA, Party.AVIM):
        assert "report of concerns" in legal_basis_of(party)
