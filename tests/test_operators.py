"""Operators' own codec tokens (``encryption/operators.py``) and ``kbflow operator``.

Issue 7, governed decoding: ``issue`` prints a token once, ``list`` shows ids and times
and never a token, ``revoke`` makes the codec server refuse the token; the SQLite file
holds only SHA-256 digests. Operator ids are staff ids, so a name is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from encryption.operators import (
    TOKEN_PREFIX,
    OperatorError,
    OperatorStore,
    token_digest,
)
from kbflow.settings import Settings
from starter.cli import app

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
#: A token's shape: the prefix, then 32 random bytes in URL-safe base64 (43 characters).
TOKEN_SHAPE = re.compile(rf"^{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}$")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KBFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _files(folder: Path) -> bytes:
    """Every byte of the operators' SQLite file and its WAL."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("operators.sqlite3*")))


# ---- the store ---------------------------------------------------------------------------


def test_a_token_authenticates_its_operator_until_revoked(tmp_path: Path) -> None:
    store = OperatorStore(tmp_path / "operators.sqlite3")
    token = store.issue("rvdk-ops-017", at=T0)
    other = store.issue("ind.ops.2", at=T0)
    assert TOKEN_SHAPE.match(token) and token != other
    assert store.authenticate(token) == "rvdk-ops-017"
    assert store.authenticate(other) == "ind.ops.2"
    assert store.authenticate(token + "x") is None
    assert store.authenticate(token[len(TOKEN_PREFIX):]) is None
    revoked = store.revoke("rvdk-ops-017", at=T0 + dt.timedelta(hours=1))
    assert revoked.revoked_at == T0 + dt.timedelta(hours=1)
    assert store.authenticate(token) is None
    assert store.authenticate(other) == "ind.ops.2"  # only that operator's token


def test_a_read_only_store_without_a_file_knows_nobody(tmp_path: Path) -> None:
    store = OperatorStore(tmp_path / "operators.sqlite3", read_only=True)
    assert store.authenticate(TOKEN_PREFIX + "x" * 43) is None
    assert store.tokens() == []
    assert not (tmp_path / "operators.sqlite3").exists()


def test_no_token_is_stored_in_the_clear(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = OperatorStore.open(settings)
    tokens = [store.issue(f"ops-{n}") for n in range(3)]
    store.revoke("ops-1")
    raw = _files(tmp_path)
    assert raw  # the control: the file is read
    for token in tokens:
        assert token.encode() not in raw
        assert token[len(TOKEN_PREFIX):].encode() not in raw
        assert token_digest(token).encode() in raw  # what is stored instead
    assert settings.operators_path.stat().st_size > 0


def test_an_operator_has_one_live_token(tmp_path: Path) -> None:
    store = OperatorStore(tmp_path / "operators.sqlite3")
    first = store.issue("rvdk-ops-017", at=T0)
    with pytest.raises(OperatorError, match=r"^operator rvdk-ops-017 has a live token "
                                            r"\(issued 2026-03-02 09:00 UTC\); revoke it"):
        store.issue("rvdk-ops-017")
    assert store.authenticate(first) == "rvdk-ops-017"  # not replaced
    store.revoke("rvdk-ops-017", at=T0 + dt.timedelta(days=1))
    second = store.issue("rvdk-ops-017", at=T0 + dt.timedelta(days=2))
    assert store.authenticate(second) == "rvdk-ops-017"
    assert store.authenticate(first) is None
    assert [(t.issued_at.day, t.revoked_at and t.revoked_at.day) for t in store.tokens()] == [
        (2, 3), (4, None)]


def test_revoking_twice_keeps_the_first_revocation(tmp_path: Path) -> None:
    store = OperatorStore(tmp_path / "operators.sqlite3")
    store.issue("rvdk-ops-017", at=T0)
    first = store.revoke("rvdk-ops-017", at=T0 + dt.timedelta(hours=1))
    again = store.revoke("rvdk-ops-017", at=T0 + dt.timedelta(hours=5))
    assert again == first
    with pytest.raises(OperatorError, match=r"^operator nobody-9: no token was ever issued$"):
        store.revoke("nobody-9")


@pytest.mark.parametrize("bad", ["Fenna Fictief", "x", "a" * 41, "ops/1", "", "öps-1"])
def test_an_operator_id_is_a_staff_id_and_never_echoed(tmp_path: Path, bad: str) -> None:
    store = OperatorStore(tmp_path / "operators.sqlite3")
    with pytest.raises(OperatorError) as error:
        store.issue(bad)
    assert str(error.value).startswith("OPERATOR_ID: must be a staff or function id")
    assert not bad or bad not in str(error.value)
    assert store.tokens() == []


# ---- kbflow operator ---------------------------------------------------------------------


def test_issue_prints_the_token_once_and_list_never(data_dir: Path) -> None:
    issued = _invoke("operator", "issue", "rvdk-ops-017")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert TOKEN_SHAPE.match(token)
    assert "shown only now" in issued.stderr
    assert "/t/<this token>" in issued.stderr
    assert OperatorStore.open(Settings(data_dir=data_dir),
                              read_only=True).authenticate(token) == "rvdk-ops-017"

    listed = _invoke("operator", "list")
    assert listed.exit_code == 0, listed.output
    assert re.fullmatch(r"rvdk-ops-017  issued \d{4}-\d\d-\d\d \d\d:\d\d UTC  live\n",
                        listed.stdout)
    as_json = json.loads(_invoke("operator", "list", "--json").stdout)
    assert [(t["operator_id"], t["revoked_at"]) for t in as_json] == [("rvdk-ops-017", None)]
    assert set(as_json[0]) == {"operator_id", "issued_at", "revoked_at"}
    assert token not in listed.output + json.dumps(as_json)


def test_revoke_then_list_shows_when(data_dir: Path) -> None:
    _invoke("operator", "issue", "rvdk-ops-017")
    refused = _invoke("operator", "issue", "rvdk-ops-017")
    assert refused.exit_code == 1
    assert "has a live token" in refused.stderr and "kbflow operator revoke" in refused.stderr
    revoked = _invoke("operator", "revoke", "rvdk-ops-017")
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.startswith("operator rvdk-ops-017: token revoked 20")
    assert _invoke("operator", "revoke", "rvdk-ops-017").exit_code == 0  # idempotent
    listed = _invoke("operator", "list").stdout
    assert re.fullmatch(r"rvdk-ops-017  issued [\d :-]+ UTC  revoked [\d :-]+ UTC\n", listed)
    assert _invoke("operator", "issue", "rvdk-ops-017").exit_code == 0  # a new token now


def test_operator_commands_refuse_in_one_line(data_dir: Path) -> None:
    unknown = _invoke("operator", "revoke", "nobody-9")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: operator nobody-9: no token was ever issued")
    assert not (data_dir / "operators.sqlite3").exists()  # revoking creates nothing
    named = _invoke("operator", "issue", "Fenna Fictief")
    assert named.exit_code == 1
    assert named.stderr.strip().splitlines() == [
        "error: OPERATOR_ID: must be a staff or function id, 2-40 characters of "
        "A-Z a-z 0-9 . _ - (not a name)"]
    assert "Fenna" not in named.output
    assert "Fenna" not in _invoke("operator", "revoke", "Fenna Fictief").output
    empty = _invoke("operator", "list")
    assert (empty.exit_code, empty.stdout) == (
        0, "no operator tokens issued (kbflow operator issue OPERATOR_ID)\n")
