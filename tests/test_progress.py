"""Progress visible without the codec (issue 7, build points 1-3).

- ``kbflow.public``: a ``Public`` model refuses a field that could hold personal data when
  its class is defined; a ``PublicText`` is made only from wordings and typed values.
- ``encryption.codec``: public payloads are marked by the converter and left in plaintext
  by ``CaseCodec`` only after its re-check; a forged marker is encrypted anyway; old
  encrypted payloads still decode.
- ``CaseWorkflow``: memo and typed search attributes upserted on every change, overdue
  flipping when a deadline passes (time-skipping server); on a real dev server a List
  Filter finds the case awaiting IND, and ``temporal workflow query --name status``
  prints readable JSON without any codec.
- The worker refuses a namespace without the search attributes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment

from encryption.codec import (
    ENCODING,
    PUBLIC,
    CaseCodec,
    PublicPayloadConverter,
    encrypted_data_converter,
    is_public_payload,
)
from encryption.keys import KeyStore
from kbflow import search_attributes as sa
from kbflow.case import Awaited, CaseStatus, EndState, Phase
from kbflow.events import Event
from kbflow.items import Measure
from kbflow.process import Party, Step
from kbflow.progress import (
    MEMO_KEY,
    AwaitedProgress,
    CaseProgress,
    Phrase,
    details_of,
    search_attribute_updates,
)
from kbflow.public import CaseRef, PersonalFieldError, Public, PublicText
from kbflow.settings import Settings, installed_binary, workflow_id
from starter.dev_server import DevServerConfig
from tests import factories as f
from tests.test_case_workflow import send, start_case
from worker import (
    SearchAttributesMissing,
    build_worker,
    check_search_attributes,
    run_worker,
)

REF = "KB-2026-7K4M2XCH-R"
NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
PERSON = "Jan Canarius"  # a fictional name, the personal value the tests plant
POLL_TIMEOUT = 30.0


def progress(**changes: Any) -> CaseProgress:
    values: dict[str, Any] = dict(
        case_ref=REF, phase=Phase.ANNOUNCED, last_step=Step(2), measure=None,
        end_state=None, next_deadline=NOW, overdue=True, closed_at=None,
        awaiting=(AwaitedProgress(party=Party.IND, event=Event.RESIDENCE_INFORMATION,
                                  step=Step(3), due=NOW, overdue=True),))
    return CaseProgress(**{**values, **changes})


# ---- Public: checked when the class is defined ------------------------------------------

@pytest.mark.parametrize("annotation", [str, str | None, tuple[str, ...], float,
                                        list[Party], dict[str, int], bytes, Any])
def test_a_public_model_refuses_a_field_that_could_be_personal(annotation: Any) -> None:
    with pytest.raises(PersonalFieldError, match=r"Forgetful\.name"):
        type("Forgetful", (Public,), {"__annotations__": {"name": annotation},
                                      "__module__": __name__})


def test_a_public_model_refuses_extra_fields() -> None:
    with pytest.raises(PersonalFieldError, match="extra='allow'"):
        class Open(Public):
            model_config = ConfigDict(extra="allow")
            phase: Phase


def test_a_public_model_takes_non_personal_types() -> None:
    class Fine(Public):
        party: Party
        step: Step | None
        count: int
        flag: bool
        on: dt.date
        at: dt.datetime | None
        ref: CaseRef
        waits: tuple[AwaitedProgress, ...]

    assert set(Fine.model_fields) == {"party", "step", "count", "flag", "on", "at", "ref",
                                      "waits"}
    with pytest.raises(ValueError):  # a CaseRef is a case ref, not any text
        Fine(party=Party.IND, step=None, count=1, flag=True, on=NOW.date(), at=None,
             ref=PERSON, waits=())


def test_the_progress_models_and_query_results_are_public() -> None:
    for model in (CaseProgress, AwaitedProgress, CaseStatus, Awaited):
        assert issubclass(model, Public)


# ---- PublicText -------------------------------------------------------------------------

def test_public_text_is_made_from_wordings_and_typed_values_only() -> None:
    text = PublicText.of(Phrase.DELIVERY, step=Step(3), sender=Party.IND,
                         recipient=Party.RVDK)
    assert text == "step 3: IND to RVDK"
    assert PublicText.of(Phrase.ERASED, date=NOW) == "erased: 2026-03-02"
    with pytest.raises(TypeError):
        PublicText(PERSON)
    with pytest.raises(TypeError, match="Wording"):
        PublicText.of("phase: {phase}", phase=Phase.OTS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="blank 'party'"):
        PublicText.of(Phrase.REMINDER, party=PERSON, event=Event.WEIGHING)
    with pytest.raises(TypeError, match="blanks"):
        PublicText.of(Phrase.PHASE)
    with pytest.raises(TypeError):
        PublicText.lines(text, PERSON)  # type: ignore[arg-type]


def test_public_text_parse_accepts_only_filled_wordings() -> None:
    details = details_of(progress(), kept_until=None, erased_at=None)
    assert details == ("phase: announced\n"
                       "awaiting IND: residence_information (due 2026-03-02, overdue)")
    assert PublicText.parse(str(details)) == details
    assert PublicText.parse("") == ""
    for forged in (f"phase: {PERSON}", f"{details}\n{PERSON}", "phase: announced ",
                   "awaiting IND: residence_information (due 1931-02-07)x"):
        with pytest.raises(ValueError, match="no kbflow wording") as refused:
            PublicText.parse(forged)
        assert PERSON not in str(refused.value)


# ---- the converter marks, the codec re-checks ---------------------------------------------

@pytest.fixture
def codec(keys: KeyStore) -> CaseCodec:
    return CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id=workflow_id(REF)))


def _payload(value: Any) -> Payload:
    return PublicPayloadConverter().to_payload(value)


def test_public_values_stay_plaintext(codec: CaseCodec) -> None:
    status = CaseStatus(case_ref=REF, phase=Phase.CLOSED, end_state=EndState.NO_MEASURE,
                        steps_done=(1, 2), awaiting=(), ots_ends_on=None, escalations=0,
                        closed_at=NOW)
    waits = [Awaited(party=Party.IND, event=Event.RESIDENCE_INFORMATION, step=Step(3),
                     since=NOW, due=NOW)]
    metadata = WorkflowMetadata(current_details=details_of(progress(), None, None))
    values = [progress(), status, waits, PublicText.of(Phrase.NEXT_DEADLINE), metadata, []]
    payloads = [_payload(value) for value in values]
    assert [p.metadata[PUBLIC] for p in payloads] == [
        b"model:kbflow.progress.CaseProgress", b"model:kbflow.case.CaseStatus",
        b"models:kbflow.case.Awaited", b"text", b"workflow-metadata", b"empty-list"]
    encoded = asyncio.run(codec.encode(payloads))
    for before, after in zip(payloads, encoded, strict=True):  # plaintext, marker dropped
        assert after.data == before.data
        assert dict(after.metadata) == {k: v for k, v in before.metadata.items()
                                        if k != PUBLIC}
    assert asyncio.run(codec.decode(encoded)) == encoded
    assert json.loads(encoded[0].data)["phase"] == "announced"


def test_personal_values_are_encrypted_as_before(codec: CaseCodec) -> None:
    start = f.case_start()
    free_details = WorkflowMetadata(current_details=f"phase: reported\n{PERSON}")
    for value in (start, PERSON, [start], free_details, {"phase": "ots"}):
        payload = _payload(value)
        assert PUBLIC not in payload.metadata
        [encoded] = asyncio.run(codec.encode([payload]))
        assert encoded.metadata["encoding"] == ENCODING
        assert asyncio.run(codec.decode([encoded])) == [payload]  # decoding as before


def _forged(kind: bytes, data: bytes, encoding: bytes = b"json/plain") -> Payload:
    return Payload(metadata={"encoding": encoding, PUBLIC: kind}, data=data)


@pytest.mark.parametrize("forged", [
    _forged(b"text", json.dumps(PERSON).encode()),
    _forged(b"text", json.dumps(f"phase: ots\n{PERSON}").encode()),
    _forged(b"model:kbflow.progress.CaseProgress",
            progress().model_dump_json().replace('"announced"', json.dumps(PERSON)).encode()),
    # valid progress, with a personal value hidden where parsing ignores it
    _forged(b"model:kbflow.progress.CaseProgress",
            progress().model_dump_json()[:-1].encode() + b',"case_ref":"KB-2026-7K4M2XCH-R"}'
            + f" {PERSON}".encode()),
    _forged(b"model:kbflow.progress.CaseProgress",
            b'{"name":' + json.dumps(PERSON).encode() + b"," + progress().model_dump_json()
            [1:].encode()),
    _forged(b"model:kbflow.progress.CaseProgress",
            progress().model_dump_json(indent=1).encode() + b"\n"),
    _forged(b"model:kbflow.events.CaseStart", f.case_start().model_dump_json().encode()),
    _forged(b"models:kbflow.case.Awaited", json.dumps([PERSON]).encode()),
    _forged(b"workflow-metadata", json.dumps({"currentDetails": PERSON}).encode(),
            b"json/protobuf"),
    _forged(b"text", json.dumps("phase: ots").encode(), b"binary/plain"),
    _forged(b"nonsense", json.dumps("phase: ots").encode()),
    _forged(b"empty-list", json.dumps([PERSON]).encode()),
    _forged(b"empty-list", f"[] {PERSON}".encode()),
], ids=["free-text", "text-with-extra-line", "model-with-text", "trailing-bytes",
        "extra-key", "other-bytes", "not-public-model", "list-of-text", "free-details",
        "other-encoding", "unknown-kind", "non-empty-list", "empty-list-and-more"])
def test_a_forged_marker_is_encrypted_anyway(codec: CaseCodec, forged: Payload) -> None:
    assert not is_public_payload(forged)
    [encoded] = asyncio.run(codec.encode([forged]))
    assert encoded.metadata["encoding"] == ENCODING
    assert PERSON.encode() not in encoded.SerializeToString()


def test_details_are_set_in_one_place_only() -> None:
    root = Path(__file__).resolve().parent.parent
    calls = {str(path.relative_to(root)): path.read_text(encoding="utf-8").count(
        "set_current_details(") for path in root.rglob("*.py")
        if ".venv" not in path.parts and path.parent.name != "tests"}
    assert {path: count for path, count in calls.items() if count} == {
        "workflows/details.py": 1}
    source = (root / "workflows" / "details.py").read_text(encoding="utf-8")
    assert re.search(r"def set_details\(details: PublicText\)[^@]*set_current_details",
                     source)


# ---- search attributes --------------------------------------------------------------------

def test_unset_search_attributes_are_unset_not_empty() -> None:
    fresh = progress(phase=Phase.REPORTED, last_step=None, awaiting=(), next_deadline=None,
                     overdue=False)
    updates = {update.key.name: update.value for update in search_attribute_updates(fresh)}
    assert updates == {"KbflowPhase": "reported", "KbflowLastStep": None,
                       "KbflowAwaiting": None, "KbflowNextDeadline": None,
                       "KbflowOverdue": False, "KbflowMeasure": None, "KbflowEndState": None}
    ots = progress(phase=Phase.OTS, measure=Measure.OTS, last_step=Step(6))
    updates = {update.key.name: update.value for update in search_attribute_updates(ots)}
    assert updates["KbflowMeasure"] == "ots" and updates["KbflowAwaiting"] == ["IND"]
    assert updates["KbflowNextDeadline"] == NOW and updates["KbflowLastStep"] == 6


async def _until(check: Any, what: str) -> Any:
    """Bounded poll of the async ``check`` until it returns a truthy value."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _attributes(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    described = await handle.describe()
    return {pair.key.name: pair.value for pair in described.typed_search_attributes}


async def test_overdue_flips_when_a_deadline_passes(
        env: WorkflowEnvironment, client: Client, task_queue: str, worker: Any) -> None:
    handle = await start_case(client, task_queue)
    await send(handle, f.announce())
    attributes = await _until(
        lambda: _attrs_when(handle, lambda a: a.get("KbflowPhase") == "announced"),
        "the announced case's search attributes")
    assert attributes["KbflowAwaiting"] == ["IND", "DTV", "RVDK"]
    assert attributes["KbflowOverdue"] is False and attributes["KbflowLastStep"] == 2
    assert "KbflowMeasure" not in attributes and "KbflowEndState" not in attributes
    due = attributes["KbflowNextDeadline"]
    memo = (await (await handle.describe()).memo())[MEMO_KEY]
    assert memo["phase"] == "announced" and memo["overdue"] is False
    assert dt.datetime.fromisoformat(memo["next_deadline"]) == due

    await env.sleep(dt.timedelta(days=15))  # past the step-3 reply deadline
    attributes = await _until(
        lambda: _attrs_when(handle, lambda a: a.get("KbflowOverdue") is True),
        "overdue after the deadline")
    assert attributes["KbflowNextDeadline"] == due
    progress_memo = CaseProgress.model_validate((await (await handle.describe()).memo())[
        MEMO_KEY])
    assert progress_memo.overdue
    assert {w.party for w in progress_memo.awaiting if w.overdue} == {Party.IND, Party.DTV}
    metadata = await handle.query("__temporal_workflow_metadata",
                                  result_type=WorkflowMetadata)
    assert "awaiting IND: residence_information (due" in metadata.current_details
    assert "overdue)" in metadata.current_details


async def _attrs_when(handle: WorkflowHandle[Any, Any], ok: Any) -> dict[str, Any] | None:
    attributes = await _attributes(handle)
    return attributes if ok(attributes) else None


# ---- on a real dev server -----------------------------------------------------------------

@pytest.fixture
async def dev_client(dev_server: WorkflowEnvironment, keys: KeyStore) -> Client:
    config = dev_server.client.config()
    config["data_converter"] = encrypted_data_converter(keys)
    return Client(**config)


def test_kbflow_server_and_the_demo_register_the_search_attributes(tmp_path: Path) -> None:
    command = DevServerConfig.from_settings(Settings(data_dir=tmp_path)).command()
    for key in sa.ALL:
        assert command[command.index(f"{key.name}={_TYPE[key.name]}") - 1] == (
            "--search-attribute")


_TYPE = {"KbflowPhase": "Keyword", "KbflowLastStep": "Int", "KbflowAwaiting": "KeywordList",
         "KbflowNextDeadline": "Datetime", "KbflowOverdue": "Bool",
         "KbflowMeasure": "Keyword", "KbflowEndState": "Keyword"}


def _address(dev_server: WorkflowEnvironment) -> str:
    return dev_server.client.service_client.config.target_host


async def test_list_filter_finds_the_case_awaiting_ind(
        dev_server: WorkflowEnvironment, dev_client: Client, store: Any) -> None:
    queue = f"kbflow-progress-{uuid.uuid4()}"
    async with build_worker(dev_client, queue, store):
        reported = await start_case(dev_client, queue)
        announced = await start_case(dev_client, queue)
        in_ots = await start_case(dev_client, queue)
        await send(announced, f.announce())
        await send(in_ots, *f.to_ots())
        await _until(lambda: _attrs_when(announced, lambda a: "IND" in a.get(
            "KbflowAwaiting", [])), "the announced case's attributes")
        await _until(lambda: _attrs_when(reported, lambda a: a.get("KbflowAwaiting")),
                     "the reported case's attributes")

        ours = {reported.id, announced.id, in_ots.id}

        async def listed(query: str) -> set[str] | None:
            ids = {w.id async for w in dev_client.list_workflows(query)} & ours
            return ids or None

        awaiting_ind = await _until(lambda: listed("KbflowAwaiting = 'IND'"),
                                    "the list filter on IND")
        assert announced.id in awaiting_ind and reported.id not in awaiting_ind
        awaiting_rvdk = await _until(lambda: _both(listed, "KbflowAwaiting = 'RVDK'",
                                                   reported.id, announced.id),
                                     "the list filter on RVDK")
        assert {reported.id, announced.id} <= awaiting_rvdk
        ots = await _until(lambda: listed("KbflowPhase = 'ots'"), "the list filter on OTS")
        assert ots == {in_ots.id}
        overdue = {w.id async for w in dev_client.list_workflows("KbflowOverdue = true")}
        assert not {reported.id, announced.id, in_ots.id} & overdue

        # Readable without any codec: the status query through the CLI binary.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        process = await asyncio.create_subprocess_exec(
            str(installed_binary("temporal")), "workflow", "query", "-w", announced.id,
            "--name", "status", "--address", _address(dev_server), "--namespace",
            dev_client.namespace, "--output", "json", "--disable-config-file",
            "--disable-config-env", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode(errors="replace")
        answer = json.loads(out)
        status = answer["queryResult"][0]
        assert status["phase"] == "announced"
        assert status["case_ref"] == announced.id.removeprefix("kb-case-")
        assert [w["party"] for w in status["awaiting"]] == ["IND", "DTV", "RVDK"]
        for handle in (reported, announced, in_ots):
            await handle.terminate(reason="test finished")


async def _both(listed: Any, query: str, *ids: str) -> set[str] | None:
    found = await listed(query)
    return found if found and set(ids) <= found else None


async def test_the_worker_refuses_a_namespace_without_the_search_attributes(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    """And the compose file's namespace job creates them (its script, run twice against
    a dev server without them: the second run changes nothing)."""
    await check_search_attributes(dev_server.client)  # the fixture registers them
    bare = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(installed_binary("temporal")))
    try:
        with pytest.raises(SearchAttributesMissing) as refused:
            await check_search_attributes(bare.client)
        message = str(refused.value)
        assert "\n" not in message
        assert all(key.name in message for key in sa.ALL)
        settings = Settings(temporal_address=_address(bare), data_dir=tmp_path)
        with pytest.raises(SearchAttributesMissing):  # before it polls any task
            await asyncio.wait_for(run_worker(settings, asyncio.Event()), 60)
        env = {**os.environ, "TEMPORAL_ADDRESS": _address(bare),
               "KBFLOW_DATA_DIR": str(tmp_path)}
        done = await asyncio.to_thread(
            subprocess.run, [str(Path(sys.executable).parent / "kbflow"), "worker"], env=env,
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [f"error: {message}"]
        # A namespace that does not exist: one line naming it and the variable.
        unknown = await asyncio.to_thread(
            subprocess.run, [str(Path(sys.executable).parent / "kbflow"), "worker"],
            env={**env, "TEMPORAL_NAMESPACE": "no-such-namespace"}, capture_output=True,
            text=True, timeout=60, check=False)
        assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
        assert unknown.stderr.strip().splitlines() == [
            "error: namespace no-such-namespace does not exist on this Temporal: check "
            "TEMPORAL_NAMESPACE (or create it: temporal operator namespace create)"]
        namespace = "kbflow-compose"
        for _ in range(2):
            await _namespace_job(_address(bare), namespace)
        config = bare.client.config()
        config["namespace"] = namespace
        await check_search_attributes(Client(**config))
    finally:
        await bare.shutdown()


async def _namespace_job(address: str, namespace: str) -> None:
    """``deploy/temporal/create-namespace.sh`` with the compose file's environment."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads docker-compose.yml")
    root = Path(__file__).resolve().parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    job = compose["services"]["temporal-namespace"]["environment"]
    env = {"PATH": f"{installed_binary('temporal').parent}:{os.environ['PATH']}",
           "TEMPORAL_ADDRESS": address, "NAMESPACE": namespace, "RETENTION": "1d",
           "SEARCH_ATTRIBUTES": job["SEARCH_ATTRIBUTES"]}
    process = await asyncio.create_subprocess_exec(
        "sh", str(root / "deploy" / "temporal" / "create-namespace.sh"), env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode(errors="replace")
