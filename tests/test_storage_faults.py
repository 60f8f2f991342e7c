"""Storage faults (issue 6 finding 11): a read-only data dir and a full disk.

The data dir is a real tmpfs, remounted read-only or filled up, so SQLite and the file
system fail as they do in the field (EROFS, ENOSPC). Tests run as root, where chmod stops
no write; mounting needs root too, so without it these tests are skipped. The injected
faults at the end run everywhere.

Commands that only read (``status``, ``packets``, ``inbox``, ``disclosures``,
``register``) work on a read-only data dir; commands that write fail with one line that
names the file and the reason; a worker whose deliveries fail keeps retrying and the CLI
says "pending", not "no worker".
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.outbox_store import OutboxStore
from encryption.keys import KeyStore
from encryption.storage import StorageError, reason
from kbflow.settings import Settings
from starter import cli as kbflow_cli
from tests.test_cli import (
    _cli,
    _one_line_error,
    _pending_line,
    _started,
)
from worker import build_worker, connect


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


@pytest.fixture
def data_mount(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/data`` on a tmpfs of its own (the CLI helpers' data dir)."""
    with _tmpfs(tmp_path / "data", "16m") as mounted:
        yield mounted


async def test_a_read_only_data_dir_serves_reads_and_refuses_writes_in_one_line(
        dev_server: WorkflowEnvironment, tmp_path: Path, data_mount: Path) -> None:
    case = await _started(dev_server, tmp_path)
    settings = case.settings
    keys = KeyStore.open(settings)
    store = OutboxStore(settings, keys=keys)
    client = await connect(settings, keys)
    async with build_worker(client, settings.task_queue, store):
        for name, path in case.files[:4]:  # steps 2 and 3, the decision
            sent = await case.cli("event", case.ref, name, str(path))
            assert sent.returncode == 0, sent.stderr
        subject = store.processing_log(case.ref)[0].data_subject_id

        _remount(data_mount, "ro")
        with pytest.raises(OSError) as refused:  # the file system refuses, even root
            (data_mount / "probe").write_text("x")
        assert refused.value.errno == errno.EROFS
        # The worker's key store (opened for writing) still reads keys: no cache helps it.
        keys.cache_seconds = 0.0
        assert keys.key_for_scope(f"kb-case-{case.ref}")[0].startswith("dk-")

        status = await case.cli("status", case.ref)
        assert status.returncode == 0, status.stderr
        assert "phase: investigating" in status.stdout
        assert (await case.cli.json("status", case.ref))["steps_done"] == [1, 2, 3]
        assert len(await case.cli.json("packets", case.ref)) == 5
        assert {p["recipient"] for p in await case.cli.json("inbox", "RVDK")} == {"RVDK"}
        disclosed = await case.cli.json("disclosures", "--subject", subject)
        assert disclosed["disclosures"]
        assert (await case.cli("register")).returncode == 0

        # Writing commands: one line, the file and the reason; no traceback.
        erase = _one_line_error(await case.cli("erase", case.ref, "--requested-by",
                                               "RvdK-privacy-01", "--reason",
                                               "art-17-request"))
        assert "cannot write" in erase and str(data_mount) in erase and "read-only" in erase
        new_case = _one_line_error(await case.cli("start", str(tmp_path / "case.json")))
        assert str(data_mount) in new_case and "read-only" in new_case

        # The worker's deliveries fail (its log: attempt to write a readonly database)
        # and are retried: the event is pending, and no worker is blamed.
        name, path = case.files[4]  # step 5: packets to IND and DT&V
        pending = _pending_line(await case.cli("event", case.ref, name, str(path),
                                               "--wait", "3"))
        assert "no worker polls" not in pending

        _remount(data_mount, "rw")  # the fault ends: Temporal's next retry delivers
        applied = await case.cli("event", case.ref, name, str(path))
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.startswith(f"accepted: {name}")
    step_5 = [p for p in store.packets(case.ref) if int(p.step) == 5]
    assert sorted(p.recipient.value for p in step_5) == ["DTV", "IND"]  # each once


async def test_a_full_disk_is_one_line_and_reading_still_works(
        dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "data", "1m") as data_dir:
        cli = _cli(dev_server, data_dir, "kbflow-full-disk")
        OutboxStore(Settings(data_dir=data_dir))
        filler = data_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fill:
            while True:
                fill.write(b"\0" * 4096)
                fill.flush()
        case_file = tmp_path / "case.json"
        case_file.write_text((Path(__file__).parent.parent / "examples" /
                              "03_ots_advice_requested.json").read_text())
        full = _one_line_error(await cli("start", str(case_file)))
        assert "disk full" in full and str(data_dir / "keys.sqlite3") in full
        subject = "subj-" + "0" * 32
        answer = await cli.json("disclosures", "--subject", subject)
        assert answer["disclosures"] == []


def test_a_key_store_opened_for_writing_still_reads_a_read_only_data_dir(
        tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "data", "4m") as data_dir:
        # as a worker's, no cache
        keys = KeyStore.open(Settings(data_dir=data_dir), cache_seconds=0.0)
        key_id, key = keys.key_for_scope("kb-case-KB-2026-AAAA1111")
        assert not (data_dir / "keys.sqlite3-shm").exists()  # all connections closed
        _remount(data_dir, "ro")
        with pytest.raises(sqlite3.OperationalError):  # SQLite cannot make its -shm file
            sqlite3.connect(data_dir / "keys.sqlite3").execute("SELECT 1 FROM data_keys")
        assert keys.key_for_scope("kb-case-KB-2026-AAAA1111") == (key_id, key)
        assert keys.key(key_id) == key and not keys.is_destroyed("kb-case-KB-2026-AAAA1111")
        with pytest.raises(StorageError, match="read-only"):
            keys.key_for_scope("kb-case-KB-2026-BBBB2222")  # a new key must be written


# ---- injected faults (run everywhere) -----------------------------------------------------


def test_a_full_disk_at_the_store_boundary_is_one_storage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    KeyStore.open(Settings(data_dir=tmp_path))

    def full(*_: object, **__: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("encryption.storage.sqlite3.connect", full)
    with pytest.raises(StorageError) as failed:
        OutboxStore(Settings(data_dir=tmp_path))
    # The outbox store opens its key store first: that is the file that fails.
    assert str(failed.value) == f"cannot write {tmp_path / 'keys.sqlite3'}: disk full"

    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    done = CliRunner().invoke(kbflow_cli.app, ["erase", "KB-2026-AAAA1111", "--requested-by",
                                               "RvdK-privacy-01", "--reason",
                                               "art-17-request"])
    assert done.exit_code == 1
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert done.output.strip() == f"error: cannot write {tmp_path / 'keys.sqlite3'}: disk full"


def test_a_read_only_store_creates_nothing(tmp_path: Path) -> None:
    # the master key and the key store exist, the outbox not
    KeyStore.open(Settings(data_dir=tmp_path))
    with pytest.raises(StorageError, match=r"cannot read .*outbox.sqlite3: cannot open"):
        OutboxStore(Settings(data_dir=tmp_path), read_only=True).erasures()
    assert not (tmp_path / "outbox.sqlite3").exists()
    assert not (tmp_path / "pseudonym.key").exists()
    keys = KeyStore.open(Settings(data_dir=tmp_path), read_only=True)
    with pytest.raises(LookupError, match="read-only"):
        keys.key_for_scope("kb-case-KB-2026-AAAA1111")  # no key is made for it
    assert not KeyStore.open(Settings(data_dir=tmp_path)).has_key("kb-case-KB-2026-AAAA1111")
    with pytest.raises(StorageError, match=r"master\.keys: no such file"):
        KeyStore.open(Settings(data_dir=tmp_path / "elsewhere"), read_only=True)
    assert not (tmp_path / "elsewhere").exists()  # no fresh master key nobody knows


@pytest.mark.parametrize(("error", "said"), [
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk full"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "read-only"),
    (sqlite3.OperationalError("database is locked"), "locked by another process"),
    (sqlite3.OperationalError("database or disk is full"), "disk full"),
])
def test_storage_reasons_are_named(error: sqlite3.Error | OSError, said: str) -> None:
    assert reason(error).startswith(said)
