"""The register of processing activities (GDPR art. 30(1), ``kbflow/register.py``) and
``kbflow register``."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from kbflow.packets import project_packet
from kbflow.process import (
    ITEM_MEANINGS,
    PARTY_NAMES,
    PROCESS_TABLE,
    RETENTION_AFTER_CLOSE,
    legal_basis_of,
    processing_activity_id,
)
from kbflow.register import register
from starter.cli import app
from tests import factories as f


def _flows() -> list[tuple[int, str]]:
    return [(int(spec.step), flow.sender.value)
            for spec in PROCESS_TABLE.values() for flow in spec.flows]


def test_one_entry_per_flow_of_the_table() -> None:
    entries = register()
    assert [(entry.step, entry.controller.split(" ")[0]) for entry in entries] == _flows()
    ids = [entry.processing_activity_id for entry in entries]
    assert len(set(ids)) == len(ids)


def test_each_entry_describes_its_flow() -> None:
    entries = {entry.processing_activity_id: entry for entry in register()}
    for spec in PROCESS_TABLE.values():
        for flow in spec.flows:
            entry = entries[processing_activity_id(spec.step, flow.sender)]
            assert entry.step == int(spec.step)
            assert entry.version == spec.version
            assert entry.processing_activity_id.endswith(f":v{spec.version}")
            assert entry.controller == f"{flow.sender.value} ({PARTY_NAMES[flow.sender]})"
            assert entry.recipients == tuple(f"{r.value} ({PARTY_NAMES[r]})"
                                             for r in flow.recipients)
            assert entry.purpose == spec.purpose
            assert entry.legal_basis == legal_basis_of(flow.sender).value
            assert entry.systems == tuple(system.value for system in spec.systems)
            assert entry.channel == flow.channel.value
            # Base data (NAW, date of birth, role) plus exactly the flow's items.
            named = {category.split(":")[0] for category in entry.data_categories[3:]}
            assert named == {item.value for item in flow.items}
            for item in flow.items:
                assert f"{item.value}: {ITEM_MEANINGS[item]}" in entry.data_categories
            assert entry.data_categories[:2] == ("name, address, place of residence (NAW)",
                                                 "date of birth")
            assert f"{RETENTION_AFTER_CLOSE.days} days" in entry.retention
            assert entry.transfers_outside_eea == "none"
            assert entry.data_subjects and entry.security_measures


def test_every_packet_points_to_a_register_entry() -> None:
    ids = {entry.processing_activity_id for entry in register()}
    record = f.full_record()
    for spec in PROCESS_TABLE.values():
        for flow in spec.flows:
            for recipient in flow.recipients:
                packet = project_packet(record, spec.step, flow.sender, recipient,
                                        packet_id="p-1",
                                        created_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
                assert packet.processing_activity_id in ids


def test_kbflow_register_json_is_the_register() -> None:
    done = CliRunner().invoke(app, ["register", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == [entry.model_dump(mode="json") for entry in register()]


def test_kbflow_register_text_lists_every_activity() -> None:
    done = CliRunner().invoke(app, ["register"])
    assert done.exit_code == 0, done.output
    text = done.stdout
    assert text.startswith("Register of processing activities (GDPR art. 30(1)): "
                           f"{len(register())} activities")
    for entry in register():
        assert f"\n{entry.processing_activity_id}\n" in text
        block = text.split(f"\n{entry.processing_activity_id}\n")[1].split("\n\n")[0]
        assert f"controller:  {entry.controller}" in block
        assert f"recipients:  {', '.join(entry.recipients)}" in block
        assert f"legal basis: {entry.legal_basis}" in block
