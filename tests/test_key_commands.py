"""``kbflow rotate-master-key`` and ``kbflow rewrap`` (``starter/master_keys.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext
from typer.testing import CliRunner, Result

from encryption.codec import CaseCodec
from encryption.keys import KeyStore, MasterKeys
from kbflow.settings import Settings, workflow_id
from starter.cli import app

CASES = [workflow_id(f"KB-2026-ROTATE{n:04d}") for n in range(3)]
ORIGINAL = Payload(metadata={"encoding": b"json/plain"},
                   data=json.dumps({"name": "Fenna Fictief"}).encode())


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KBFLOW_MASTER_KEYS", raising=False)
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


def _history(keys: KeyStore) -> dict[str, Payload]:
    """One encrypted payload per case, as the worker writes them."""
    return {case: asyncio.run(CaseCodec(keys).with_context(WorkflowSerializationContext(
        namespace="default", workflow_id=case)).encode([ORIGINAL]))[0] for case in CASES}


def _decodes(keys: KeyStore, payload: Payload) -> bool:
    return asyncio.run(CaseCodec(keys).decode([payload])) == [ORIGINAL]


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_rotate_master_key_adds_a_key_and_rewraps_every_data_key(data_dir: Path) -> None:
    keys = KeyStore.open(Settings.from_env())
    history = _history(keys)
    keys.destroy(CASES[2])  # an erased case has nothing left to rewrap
    old = keys.master_keys.current

    done = CliRunner().invoke(app, ["rotate-master-key"])
    assert done.exit_code == 0, done.output
    lines = (data_dir / "master.keys").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{old}:")
    new = lines[1].partition(":")[0]
    assert done.stdout.strip() == (f"new master key {new} is current; "
                                   "rewrapped 2 data key(s)")
    assert (data_dir / "master.keys").stat().st_mode & 0o777 == 0o600

    # A process started now (new master key current) reads the old history; the history
    # is the same bytes; the old master key is no longer needed.
    fresh = KeyStore.open(Settings.from_env())
    assert fresh.master_keys.current == new
    only_new = KeyStore(fresh.path, MasterKeys(keys={new: fresh.master_keys.keys[new]},
                                               current=new))
    assert _decodes(only_new, history[CASES[0]]) and _decodes(only_new, history[CASES[1]])

    again = CliRunner().invoke(app, ["rotate-master-key"])
    assert again.exit_code == 0, again.output
    assert "rewrapped 2 data key(s)" in again.stdout
    assert len((data_dir / "master.keys").read_text().splitlines()) == 3


def test_rotate_master_key_refuses_when_keys_come_from_the_environment(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    KeyStore.open(Settings.from_env()).key_for_scope(CASES[0])
    before = (data_dir / "master.keys").read_text()
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", f"mk-env:{'44' * 32}")
    error = _one_line_error(CliRunner().invoke(app, ["rotate-master-key"]))
    assert "KBFLOW_MASTER_KEYS is set" in error
    assert "`kbflow rewrap`" in error
    assert (data_dir / "master.keys").read_text() == before
    assert "44" * 32 not in error


def test_rewrap_after_rotating_in_the_secret_store(data_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    old = f"mk-old:{'55' * 32}"
    new = f"mk-new:{'66' * 32}"
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", old)
    history = _history(KeyStore.open(Settings.from_env()))
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", f"{new},{old}")  # the new one first
    done = CliRunner().invoke(app, ["rewrap"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "rewrapped 3 data key(s)"
    assert CliRunner().invoke(app, ["rewrap"]).stdout.strip() == "rewrapped 0 data key(s)"
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", new)  # the old key retired
    retired = KeyStore.open(Settings.from_env())
    assert all(_decodes(retired, payload) for payload in history.values())
    assert not (data_dir / "master.keys").exists()


def test_rewrap_names_a_master_key_it_does_not_have(data_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", f"mk-gone:{'77' * 32}")
    _history(KeyStore.open(Settings.from_env()))
    monkeypatch.setenv("KBFLOW_MASTER_KEYS", f"mk-next:{'88' * 32}")  # forgot the old one
    error = _one_line_error(CliRunner().invoke(app, ["rewrap"]))
    assert "master key mk-gone is not configured" in error


@pytest.mark.parametrize("command", ["rotate-master-key", "rewrap"])
def test_key_commands_need_the_workers_key_store(data_dir: Path, command: str) -> None:
    error = _one_line_error(CliRunner().invoke(app, [command]))
    assert "is KBFLOW_DATA_DIR the worker's?" in error
    assert not (data_dir / "keys.sqlite3").exists()


@pytest.mark.parametrize("command", ["rotate-master-key", "rewrap"])
def test_key_commands_need_the_master_keys(data_dir: Path, command: str) -> None:
    KeyStore.open(Settings.from_env()).key_for_scope(CASES[0])
    (data_dir / "master.keys").unlink()
    error = _one_line_error(CliRunner().invoke(app, [command]))
    assert error.startswith("error: no master keys: set KBFLOW_MASTER_KEYS")
    assert not (data_dir / "master.keys").exists()  # no fresh key that unwraps nothing
