"""Settings in one place (issue 6, finding 11): every environment variable kbflow reads is
read by ``kbflow.settings.Settings.from_env`` and listed in its docstring and the README;
every data-dir file name is spelled once; the README's purity claim holds."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import kbflow.settings as settings_module
from activities.outbox_store import OutboxStore
from activities.pseudonyms import Pseudonymiser
from encryption.codec_server import load_token
from encryption.keys import KeyStore, MasterKeys
from encryption.sealed import PartyKeys
from kbflow.process import Party
from kbflow.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Python source of kbflow, its tools and benchmarks; tests set variables for subprocesses.
SOURCE = sorted(
    [*ROOT.glob("*.py"),
     *(path for folder in ROOT.iterdir() if folder.is_dir() and not folder.name.startswith(".")
       and folder.name not in {"tests", "build", "dist"} for path in folder.rglob("*.py"))])
SECRETS = {"KBFLOW_MASTER_KEYS": f"mk-test:{'ab' * 32}", "KBFLOW_PSEUDONYM_KEY": "cd" * 32,
           "KBFLOW_CODEC_TOKEN": "codec-token-secret"}


class _RecordingEnv(Mapping[str, str]):
    """An environment that remembers which names were asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.known = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.known[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.asked.add(name)
        return name in self.known

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("Settings.from_env must ask for its variables by name")

    def __len__(self) -> int:
        return len(self.known)


def _variables_read() -> set[str]:
    env = _RecordingEnv({})
    Settings.from_env(env)
    return env.asked


def _table_variables(text: str, quote: str) -> set[str]:
    """The first column of the markdown table headed ``| variable | default | meaning |``."""
    table = text[text.index("| variable | default | meaning |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    pattern = re.compile(rf"^\| {re.escape(quote)}([A-Z_]+){re.escape(quote)} \|")
    names = {match.group(1) for row in rows if (match := pattern.match(row))}
    assert len(names) == len(rows), f"a row without a variable name: {rows}"
    return names


def _readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_from_env_reads_the_nineteen_variables() -> None:
    assert _variables_read() == {
        "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "KBFLOW_TASK_QUEUE", "KBFLOW_DATA_DIR",
        "KBFLOW_MASTER_KEYS", "KBFLOW_PSEUDONYM_KEY", "KBFLOW_CODEC_TOKEN",
        "KBFLOW_PARTY_KEYS_DIR", "KBFLOW_METRICS_PORT", "KBFLOW_STORE_URL", "KBFLOW_KMS_URL",
        "KBFLOW_KMS_TOKEN", "KBFLOW_KMS_KEY", "KBFLOW_KMS_MOUNT", "KBFLOW_KMS_CA_FILE",
        "KBFLOW_API_ADDRESS", "KBFLOW_API_TLS_DIR", "KBFLOW_API_URL",
        "KBFLOW_API_FSC_PUBLIC_KEYS",
    }


def test_the_settings_docstring_lists_exactly_the_variables_read() -> None:
    assert settings_module.__doc__ is not None
    assert _table_variables(settings_module.__doc__, "``") == _variables_read()


def test_the_readme_lists_exactly_the_variables_read() -> None:
    assert _table_variables(_readme_section("Running it (ops)"), "`") == _variables_read()


#: A KMS's variables come together (``tests/test_kms.py`` tests their rules).
KMS = {"KBFLOW_KMS_URL": "https://kms.example", "KBFLOW_KMS_TOKEN": "probe-token",
       "KBFLOW_KMS_KEY": "kbflow"}


@pytest.mark.parametrize("name", sorted(_variables_read()))
def test_every_variable_read_changes_the_settings(name: str) -> None:
    value = {"TEMPORAL_ADDRESS": "127.0.0.1:17233", "KBFLOW_METRICS_PORT": "9464",
             "KBFLOW_KMS_URL": "https://kms.example:8200", "KBFLOW_KMS_TOKEN": "other",
             "KBFLOW_KMS_KEY": "other", "KBFLOW_KMS_MOUNT": "kms/transit",
             "KBFLOW_STORE_URL": "postgresql://kbflow@db.test/kbflow",
             "KBFLOW_API_ADDRESS": "0.0.0.0:9443",
             "KBFLOW_API_URL": "https://kbflow.example/api"}.get(name,
                                                                           "/probe-value")
    base = KMS if name.startswith("KBFLOW_KMS_") else {}
    assert Settings.from_env({**base, name: value}) != Settings.from_env(base)
    if name in KMS:
        return  # required with a KMS: empty is refused (tests/test_kms.py)
    assert Settings.from_env({**base, name: ""}) == Settings.from_env(base)  # empty: unset


@pytest.mark.parametrize("address", ["8443", "localhost", "localhost:0", ":8443",
                                     "localhost:http"])
def test_an_api_address_that_is_no_host_and_port_names_the_variable(address: str) -> None:
    with pytest.raises(SettingsError, match=r"^KBFLOW_API_ADDRESS: must be host:port"):
        Settings.from_env({"KBFLOW_API_ADDRESS": address})


@pytest.mark.parametrize("url", ["http://kbflow.example", "kbflow.example",
                                 "https://", "https://kbflow.example:99999",
                                 "https://kbflow.example/?q=1"])
def test_an_api_url_that_is_no_https_url_names_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match=r"^KBFLOW_API_URL: "):
        Settings.from_env({"KBFLOW_API_URL": url})


def test_the_api_base_url_defaults_to_the_address() -> None:
    assert Settings.from_env({}).api_base_url == "https://127.0.0.1:8443"
    assert Settings.from_env({"KBFLOW_API_URL": "https://kbflow.example/api/"}
                             ).api_base_url == "https://kbflow.example/api"


@pytest.mark.parametrize("port", ["http", "0", "65536", "-1", "94 64"])
def test_a_metrics_port_that_is_no_port_names_the_variable(port: str) -> None:
    with pytest.raises(SettingsError, match=r"^KBFLOW_METRICS_PORT: not a port number"):
        Settings.from_env({"KBFLOW_METRICS_PORT": port})


def test_no_other_module_reads_the_environment() -> None:
    readers = []
    for path in SOURCE:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
        for token in tokens:
            if token.type == tokenize.NAME and token.string in {"environ", "environb",
                                                                "getenv", "getenvb"}:
                readers.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert readers and all(r.startswith("kbflow/settings.py:") for r in readers), readers


def test_secrets_stay_out_of_the_repr() -> None:
    settings = Settings.from_env({**SECRETS, "KBFLOW_DATA_DIR": "/data"})
    assert settings.master_keys == SECRETS["KBFLOW_MASTER_KEYS"]
    assert settings.pseudonym_key == SECRETS["KBFLOW_PSEUDONYM_KEY"]
    assert settings.codec_token == SECRETS["KBFLOW_CODEC_TOKEN"]
    for shown in (repr(settings), str(settings)):
        assert "/data" in shown  # the control: the repr shows the settings
        for secret in SECRETS.values():
            assert secret not in shown
        assert "ab" * 32 not in shown


# ---- data-dir file names, spelled once ---------------------------------------------------

FILE_NAMES = {"outbox.sqlite3", "keys.sqlite3", "master.keys", "pseudonym.key", "codec.token",
              "operators.sqlite3", "party-keys", "temporal.sqlite", "temporal-server.log",
              "api-tls"}


def _path_properties(settings: Settings) -> dict[str, Path]:
    return {name: getattr(settings, name) for name in dir(Settings)
            if name.endswith("_path") and isinstance(getattr(Settings, name), property)}


def test_every_data_dir_file_is_a_settings_property() -> None:
    settings = Settings(data_dir=Path("/data"))
    paths = _path_properties(settings)
    assert all(path.parent == Path("/data") for path in paths.values()), paths
    assert {path.name for path in paths.values()} == FILE_NAMES
    assert len(set(paths.values())) == len(paths)  # no two properties share a file


def _string_constants(path: Path) -> Iterator[str]:
    """Every string constant of ``path`` except docstrings (docs may name the files)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.value


@pytest.mark.parametrize("file_name", sorted(FILE_NAMES))
def test_each_data_dir_file_name_is_spelled_once(file_name: str) -> None:
    spelled = [str(path.relative_to(ROOT)) for path in SOURCE
               for constant in _string_constants(path) if file_name in constant]
    assert spelled == ["kbflow/settings.py"]


def test_only_settings_joins_paths_onto_the_data_dir() -> None:
    joins = [f"{path.relative_to(ROOT)}:{number}" for path in SOURCE
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"data_dir\s*/", line) and not line.lstrip().startswith("#")]
    assert joins and all(j.startswith("kbflow/settings.py:") for j in joins), joins


def test_development_files_land_where_the_settings_say(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = OutboxStore(settings)  # opens the key store, master keys and pseudonym key
    store.party_keys.public_key(Party.IND)
    load_token(settings)
    expected = {settings.outbox_path, settings.key_store_path, settings.master_keys_path,
                settings.pseudonym_key_path, settings.codec_token_path,
                settings.party_keys_path}
    made = {path for path in settings.data_dir.iterdir()
            if not path.name.endswith(("-wal", "-shm"))}
    assert made == expected


def test_configured_secrets_are_used_and_no_file_is_made(tmp_path: Path) -> None:
    folder = tmp_path / "public-keys"
    folder.mkdir()
    settings = Settings.from_env({**SECRETS, "KBFLOW_DATA_DIR": str(tmp_path / "data"),
                                  "KBFLOW_PARTY_KEYS_DIR": str(folder)})
    assert MasterKeys.load(settings).current == "mk-test"
    assert Pseudonymiser.load(settings) is not None
    assert load_token(settings) == SECRETS["KBFLOW_CODEC_TOKEN"]
    party_keys = PartyKeys.open(settings)
    assert party_keys.folder == folder and not party_keys.create_missing
    KeyStore.open(settings)
    assert not settings.master_keys_path.exists()
    assert not settings.pseudonym_key_path.exists()
    assert not settings.codec_token_path.exists()
    assert list(folder.iterdir()) == []


def test_a_malformed_pseudonym_key_names_the_variable_not_the_value() -> None:
    settings = Settings(pseudonym_key="not-hex-at-all")
    with pytest.raises(ValueError, match=r"^KBFLOW_PSEUDONYM_KEY: must be 64 hex") as error:
        Pseudonymiser.load(settings)
    assert "not-hex-at-all" not in str(error.value)


# ---- the README's purity claim -----------------------------------------------------------

#: Modules whose import means I/O, the environment, process-wide state or Temporal.
IMPURE_IMPORTS = {"os", "sys", "io", "pathlib", "shutil", "sysconfig", "subprocess",
                  "socket", "sqlite3", "asyncio", "logging", "structlog", "temporalio",
                  "httpx"}
IMPURE_CALLS = {"open", "print", "input"}


def _pure_and_impure() -> tuple[set[str], set[str]]:
    layout = _readme_section("Layout")
    claim = layout[layout.index("Pure — "):]
    pure_part, _, impure_part = claim.partition("Not pure")
    modules = re.compile(r"`(kbflow/[a-z_]+\.py)`")
    return set(modules.findall(pure_part)), set(modules.findall(impure_part))


def _impurities(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names} & IMPURE_IMPORTS
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module.split(".")[0]} & IMPURE_IMPORTS
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in IMPURE_CALLS):
            found.add(f"{node.func.id}()")
    return found


def test_the_readme_names_every_kbflow_module_pure_or_not() -> None:
    pure, impure = _pure_and_impure()
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "kbflow").glob("*.py")
               if path.name != "__init__.py"}
    assert not pure & impure
    assert pure | impure == modules


def test_the_modules_called_pure_are() -> None:
    pure, impure = _pure_and_impure()
    assert {module: found for module in sorted(pure)
            if (found := _impurities(ROOT / module))} == {}
    # The control: each module named impure does something the check sees.
    assert all(_impurities(ROOT / module) for module in impure), impure


# ---- a wrong data dir gets no fresh keys ---------------------------------------------------

def _cli(data_dir: Path, *args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from starter.cli import app

    env = {"KBFLOW_DATA_DIR": str(data_dir), "TEMPORAL_ADDRESS": "127.0.0.1:1",
           "KBFLOW_MASTER_KEYS": None, "KBFLOW_PSEUDONYM_KEY": None}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stderr


def test_erase_in_a_wrong_data_dir_makes_no_keys(tmp_path: Path) -> None:
    code, stderr = _cli(tmp_path / "elsewhere", "erase", "KB-2026-AAAA1111",
                        "--requested-by", "staff-1", "--reason", "court-order")
    assert code == 1
    assert stderr.strip().splitlines() == [
        f"error: no key store at {tmp_path / 'elsewhere' / 'keys.sqlite3'}; "
        "is KBFLOW_DATA_DIR the worker's?"]
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("command", [["packets", "KB-2026-AAAA1111"], ["inbox", "IND"],
                                     ["disclosures", "--subject", "subj-" + "0" * 32]])
def test_reading_without_the_master_keys_makes_none(tmp_path: Path, command: list[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    OutboxStore(settings)  # the worker's data dir, whose master keys live elsewhere
    settings.master_keys_path.unlink()
    code, stderr = _cli(tmp_path, *command)
    assert code == 1
    assert stderr.strip().splitlines() == [
        "error: no master keys: set KBFLOW_MASTER_KEYS or use the worker's KBFLOW_DATA_DIR "
        f"({settings.master_keys_path} is missing)"]
    assert not settings.master_keys_path.exists()


@pytest.mark.parametrize("text", ["garbage", "mk-1:abcd", "mk-1:" + "zz" * 32])
def test_malformed_master_keys_name_where_they_came_from(tmp_path: Path, text: str) -> None:
    """The message names the variable (or the file) and the rule, never the keys."""
    with pytest.raises(ValueError) as from_env:
        MasterKeys.load(Settings(data_dir=tmp_path, master_keys=text))
    assert str(from_env.value) == (
        "KBFLOW_MASTER_KEYS: master keys: each entry must be id:64 hex characters")
    path = Settings(data_dir=tmp_path).master_keys_path
    path.write_text(text + "\n")
    with pytest.raises(ValueError) as from_file:
        MasterKeys.load(Settings(data_dir=tmp_path), create=False)
    assert str(from_file.value) == (
        f"{path}: master keys: each entry must be id:64 hex characters")
    assert text not in str(from_env.value) + str(from_file.value).replace(str(path), "")
