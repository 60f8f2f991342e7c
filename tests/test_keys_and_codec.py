"""Envelope keys (``encryption/keys.py``) and the payload codec (``encryption/codec.py``).

Per-case data keys, ciphertext without plaintext, tamper detection, master-key rotation
(new master key, rewrap, old payloads still decode, nothing rewritten) and
crypto-shredding (one case undecodable, the others fine, the wrapped key gone from disk).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    WorkflowSerializationContext,
)

import encryption.keys as keys_module
from encryption.codec import ENCODING, KEY_ID, CaseCodec
from encryption.keys import SYSTEM_SCOPE, KeyStore, KeyUnavailable, MasterKeys
from kbflow.settings import Settings, workflow_id
from tests import factories as f

CASE_A = workflow_id("KB-2026-KEYSAAAA01")
CASE_B = workflow_id("KB-2026-KEYSBBBB02")


@pytest.fixture
def keys(tmp_path: Path) -> KeyStore:
    return KeyStore.open(Settings(data_dir=tmp_path))


def _personal() -> Payload:
    """A payload as the pydantic converter makes it, full of (fictional) personal data."""
    document = {"persons": [f.CHILD.model_dump(mode="json"), f.PARENT.model_dump(mode="json")],
                "relaas": f.RELAAS.model_dump(mode="json"), "v_number": f.V_NUMBERS[0]}
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(document).encode())


def _codec(keys: KeyStore, case: str) -> CaseCodec:
    return CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id=case))


def _encode(keys: KeyStore, case: str, *payloads: Payload) -> list[Payload]:
    return asyncio.run(_codec(keys, case).encode(list(payloads)))


def _decode(keys: KeyStore, *payloads: Payload) -> list[Payload]:
    return asyncio.run(CaseCodec(keys).decode(list(payloads)))


def _text(payloads: list[Payload]) -> str:
    return "".join(p.SerializeToString().decode("latin-1") for p in payloads)


# ---- per-case keys ----------------------------------------------------------------------


def test_each_case_has_its_own_data_key(keys: KeyStore) -> None:
    id_a, key_a = keys.key_for_scope(CASE_A)
    id_b, key_b = keys.key_for_scope(CASE_B)
    assert id_a != id_b and key_a != key_b
    assert len(key_a) == 32  # AES-256
    assert keys.key_for_scope(CASE_A) == (id_a, key_a)  # stable
    assert keys.key(id_a) == key_a
    [a] = _encode(keys, CASE_A, _personal())
    [b] = _encode(keys, CASE_B, _personal())
    assert a.metadata[KEY_ID].decode() == id_a
    assert b.metadata[KEY_ID].decode() == id_b


def test_activity_payloads_use_their_workflows_key(keys: KeyStore) -> None:
    codec = CaseCodec(keys).with_context(ActivitySerializationContext(
        namespace="default", workflow_id=CASE_A, workflow_type="CaseWorkflow",
        activity_type="deliver_packet", activity_task_queue="q", is_local=False,
        activity_id="1"))
    [encoded] = asyncio.run(codec.encode([_personal()]))
    assert encoded.metadata[KEY_ID].decode() == keys.key_for_scope(CASE_A)[0]
    [unscoped] = asyncio.run(CaseCodec(keys).encode([_personal()]))
    assert unscoped.metadata[KEY_ID].decode() == keys.key_for_scope(SYSTEM_SCOPE)[0]


def test_a_data_key_is_stored_only_wrapped(tmp_path: Path, keys: KeyStore) -> None:
    _, key = keys.key_for_scope(CASE_A)
    on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("keys.sqlite3*"))
    assert key not in on_disk
    # A store with another master key cannot unwrap it.
    stranger = KeyStore(tmp_path / "keys.sqlite3",
                        MasterKeys.parse(f"mk-other:{'11' * 32}", current_first=True))
    with pytest.raises(KeyUnavailable, match=r"master key mk-\S+ is not configured"):
        stranger.key_for_scope(CASE_A)


# ---- ciphertext -------------------------------------------------------------------------


def test_ciphertext_holds_no_plaintext(keys: KeyStore) -> None:
    original = _personal()
    assert f.leaked(_text([original]))  # the control: the plaintext has them
    encoded = _encode(keys, CASE_A, original, original)
    assert not f.leaked(_text(encoded))
    assert b"json/plain" not in b"".join(p.SerializeToString() for p in encoded)
    assert {p.metadata["encoding"] for p in encoded} == {ENCODING}
    assert set(encoded[0].metadata) == {"encoding", KEY_ID}
    assert encoded[0].data != encoded[1].data  # a fresh nonce per payload
    assert _decode(keys, *encoded) == [original, original]


def test_tampering_is_detected(keys: KeyStore) -> None:
    [encoded] = _encode(keys, CASE_A, _personal())
    for position in (0, 12, len(encoded.data) - 1):  # nonce, ciphertext, tag
        data = bytearray(encoded.data)
        data[position] ^= 0x80
        tampered = Payload(metadata=dict(encoded.metadata), data=bytes(data))
        with pytest.raises(ValueError, match="authentication failed"):
            _decode(keys, tampered)
    # Relabelled as another case's payload: its key id is bound as associated data.
    other_id, _ = keys.key_for_scope(CASE_B)
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: other_id.encode()},
                         data=encoded.data)
    with pytest.raises(ValueError, match="authentication failed"):
        _decode(keys, relabelled)
    truncated = Payload(metadata=dict(encoded.metadata), data=encoded.data[:-1])
    with pytest.raises(ValueError):
        _decode(keys, truncated)


def test_unencrypted_payloads_decode_as_they_are(keys: KeyStore) -> None:
    plain = Payload(metadata={"encoding": b"binary/null"})
    assert _decode(keys, plain) == [plain]


# ---- master-key rotation ----------------------------------------------------------------


def _data_key_rows(path: Path) -> dict[str, tuple[str | None, bytes | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, master_key_id, wrapped FROM data_keys").fetchall()
    return {key_id: (master, wrapped) for key_id, master, wrapped in rows}


def test_master_key_rotation_rewraps_and_old_payloads_still_decode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KBFLOW_MASTER_KEYS", raising=False)
    keys = KeyStore.open(Settings(data_dir=tmp_path))
    old_master = keys.master_keys.current
    history = {case: _encode(keys, case, _personal()) for case in (CASE_A, CASE_B)}
    recorded = {case: [p.SerializeToString() for p in payloads]
                for case, payloads in history.items()}
    before = _data_key_rows(keys.path)

    new_master = MasterKeys.add_to_file(Settings(data_dir=tmp_path))
    rotated = KeyStore.open(Settings(data_dir=tmp_path))
    assert rotated.master_keys.current == new_master != old_master
    assert rotated.rewrap() == 2
    assert rotated.rewrap() == 0  # nothing left under the old master key

    after = _data_key_rows(keys.path)
    assert after.keys() == before.keys()  # the same data keys, so the same payloads
    assert {master for master, _ in after.values()} == {new_master}
    assert all(after[key_id][1] != before[key_id][1] for key_id in before)

    # A fresh store that knows only the new master key reads the old history as it was.
    only_new = MasterKeys(keys={new_master: rotated.master_keys.keys[new_master]},
                          current=new_master)
    fresh = KeyStore(tmp_path / "keys.sqlite3", only_new)
    for case, payloads in history.items():
        assert [p.SerializeToString() for p in payloads] == recorded[case]  # not rewritten
        assert _decode(fresh, *payloads) == [_personal()]
    # New payloads of a case keep using its (rewrapped) data key.
    [later] = _encode(fresh, CASE_A, _personal())
    assert later.metadata[KEY_ID] == history[CASE_A][0].metadata[KEY_ID]
    # And a store that knows only the old master key no longer unwraps anything.
    only_old = MasterKeys(keys={old_master: keys.master_keys.keys[old_master]},
                          current=old_master)
    with pytest.raises(KeyUnavailable, match=f"master key {new_master} is not configured"):
        KeyStore(tmp_path / "keys.sqlite3", only_old).key(
            history[CASE_B][0].metadata[KEY_ID].decode())


def test_master_keys_from_the_environment_put_the_first_current(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", f"mk-new:{'22' * 32},mk-old:{'33' * 32}")
    master = MasterKeys.load(Settings.from_env())
    assert master.current == "mk-new"
    assert set(master.keys) == {"mk-new", "mk-old"}
    assert not (tmp_path / "master.keys").exists()
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", "mk-short:abcd")
    with pytest.raises(ValueError, match="id:64 hex"):
        MasterKeys.load(Settings.from_env())


# ---- crypto-shredding -------------------------------------------------------------------


def test_destroying_a_case_key_makes_only_that_case_undecodable(tmp_path: Path,
                                                                keys: KeyStore) -> None:
    [a] = _encode(keys, CASE_A, _personal())
    [b] = _encode(keys, CASE_B, _personal())
    key_id_a = a.metadata[KEY_ID].decode()

    assert keys.destroy(CASE_A) is True
    assert keys.destroy(CASE_A) is False  # gone already
    assert keys.destroy(workflow_id("KB-2026-NEVER00001")) is False
    assert keys.is_destroyed(CASE_A) and not keys.is_destroyed(CASE_B)
    fresh = KeyStore.open(Settings(data_dir=tmp_path))
    for store in (keys, fresh):  # this process, and a fresh one
        with pytest.raises(KeyUnavailable, match=f"{key_id_a}: destroyed \\(case erased\\)"):
            _decode(store, a)
        with pytest.raises(KeyUnavailable, match="destroyed"):
            store.key_for_scope(CASE_A)  # never a fresh key for an erased case
        assert _decode(store, b) == [_personal()]
    # What an erased case still writes goes under the system key, not a new case key.
    [after] = _encode(keys, CASE_A, Payload(metadata={"encoding": b"binary/null"}))
    assert after.metadata[KEY_ID].decode() == keys.key_for_scope(SYSTEM_SCOPE)[0]
    # Rotation skips it: there is nothing left to rewrap.
    MasterKeys.add_to_file(Settings(data_dir=tmp_path))
    assert KeyStore.open(Settings(data_dir=tmp_path)).rewrap() == 2  # CASE_B and the system key


def test_a_destroyed_key_leaves_no_bytes_on_disk(tmp_path: Path, keys: KeyStore) -> None:
    keys.key_for_scope(CASE_A)
    keys.key_for_scope(CASE_B)
    rows = _data_key_rows(keys.path)
    wrapped_a = next(wrapped for key_id, (_, wrapped) in rows.items()
                     if keys.key_for_scope(CASE_A)[0] == key_id)
    wrapped_b = next(wrapped for key_id, (_, wrapped) in rows.items()
                     if keys.key_for_scope(CASE_B)[0] == key_id)
    assert wrapped_a is not None and wrapped_b is not None

    def on_disk() -> bytes:
        return b"".join(path.read_bytes() for path in sorted(tmp_path.glob("keys.sqlite3*")))

    assert wrapped_a in on_disk()  # the control
    keys.destroy(CASE_A)
    assert wrapped_a not in on_disk()  # secure_delete + checkpoint: overwritten, WAL empty
    assert wrapped_b in on_disk()


def test_a_running_process_follows_a_master_key_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "CACHE_SECONDS", 0.0)  # every lookup reads the store
    # e.g. a worker, started before the rotation
    running = KeyStore.open(Settings(data_dir=tmp_path))
    key_id, key = running.key_for_scope("kb-case-KB-2026-ROTATE01")
    MasterKeys.add_to_file(Settings(data_dir=tmp_path))
    # the rotation, by another process
    assert KeyStore.open(Settings(data_dir=tmp_path)).rewrap() == 1
    assert running.key(key_id) == key  # reloads the master keys instead of failing


def test_an_ops_folder_of_public_keys_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from encryption.sealed import PARTY_KEYS_ENV, PartyKeyMissing, PartyKeys
    from kbflow.process import Party

    folder = tmp_path / "public-keys"
    folder.mkdir()
    monkeypatch.setenv(PARTY_KEYS_ENV, str(folder))
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path / "data"))
    keys = PartyKeys.open(Settings.from_env())
    with pytest.raises(PartyKeyMissing, match="RVDK: no public key"):
        keys.seal(Party.RVDK, b"packet")
    assert list(folder.iterdir()) == []
