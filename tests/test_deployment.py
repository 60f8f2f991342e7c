"""Structural checks of the production deployment: docker-compose.yml, Dockerfile,
.dockerignore and deploy/. No Docker, no network: the files are parsed, compose's
variable interpolation is emulated, and what they name is checked against kbflow itself
(its settings and key variables, its `kbflow` commands and their options)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer.main

from activities.pseudonyms import KEY_ENV
from encryption.codec_server import TOKEN_ENV
from encryption.keys import MASTER_KEYS_ENV
from encryption.sealed import PARTY_KEYS_ENV
from kbflow import search_attributes
from kbflow.settings import DEFAULT_TASK_QUEUE, STORE_URL_ENV, Settings
from starter.cli import app
from worker import GRACEFUL_SHUTDOWN

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
KBFLOW_IMAGE = "kbflow:local"
KBFLOW_SERVICES = sorted(name for name, service in SERVICES.items()
                         if service.get("image") == KBFLOW_IMAGE)
#: The variables kbflow reads for its keys (besides the Settings variables).
KEY_VARIABLES = {MASTER_KEYS_ENV, KEY_ENV, PARTY_KEYS_ENV, TOKEN_ENV}
SECRET_NAME = re.compile(r"(PASSWORD|PWD|SECRET|TOKEN|_KEYS?)$")
#: Values for the required variables, so that the file can be resolved as compose would.
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", MASTER_KEYS_ENV: "mk-test:" + "ab" * 32,
           KEY_ENV: "cd" * 32, TOKEN_ENV: "codec-secret", "KBFLOW_DB_PASSWORD": "kb-secret"}

# --- compose interpolation ------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(LookupError):
    """A `${NAME:?…}` or `${NAME?…}` reference to a variable that is not set."""


def references(text: str) -> Iterator[tuple[str, str, str]]:
    """(name, operator, argument) of each variable reference in ``text``; `$$` is none."""
    for match in _REFERENCE.finditer(text):
        if match["escaped"]:
            continue
        name = match["braced"] or match["plain"]
        yield name, match["operator"] or "", match["argument"] or ""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with its variables replaced as `docker compose` does."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        value = env.get(name)
        unset = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("-"):
            return argument if unset else str(value)
        if operator.endswith("?"):
            if unset:
                raise MissingVariable(f"{name}: {argument}")
            return str(value)
        if operator.endswith("+"):
            return "" if unset else argument
        return value or ""

    return _REFERENCE.sub(replace, text)


def resolved(value: Any, env: Mapping[str, str] = SECRETS) -> Any:
    """``value`` (any part of the compose file) with every string interpolated."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [resolved(item, env) for item in value]
    if isinstance(value, dict):
        return {key: resolved(item, env) for key, item in value.items()}
    return value


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)


# --- compose shapes --------------------------------------------------------------------


def environment(service: str) -> dict[str, str]:
    """The service's environment, as written (a mapping or a list of NAME=value)."""
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        return dict(str(entry).partition("=")[::2] for entry in env)
    return {name: str(value) for name, value in env.items()}


def mounts(service: str) -> list[dict[str, Any]]:
    """The service's volumes as long-syntax mappings, resolved with the defaults."""
    found = []
    for entry in resolved(SERVICES[service].get("volumes", [])):
        if isinstance(entry, dict):
            found.append(entry)
            continue
        source, target, *mode = entry.split(":")
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        found.append({"type": kind, "source": source, "target": target,
                      "read_only": "ro" in (mode[0].split(",") if mode else [])})
    return found


def published(service: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    found = []
    for entry in resolved(SERVICES[service].get("ports", [])):
        address, host_port, container_port = str(entry).split("/")[0].rsplit(":", 2)
        found.append((address, int(host_port), int(container_port)))
    return found


def duration(text: str) -> timedelta:
    """A compose duration: `45s`, `1m30s`, `1h`."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert parts and text, f"not a duration: {text!r}"
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def settings_variables() -> set[str]:
    """The variables Settings.from_env reads: setting one changes the settings."""
    names = set()
    baseline = _settings_with({})
    for name in {name for service in KBFLOW_SERVICES for name in environment(service)}:
        probe = {STORE_URL_ENV: "postgresql://probe@db/probe",  # a valid value
                 "KBFLOW_API_ADDRESS": "probe:9999",
                 "KBFLOW_API_URL": "https://probe.example"}.get(
            name, "9999" if name.endswith("_PORT") else "/probe-value")
        if _settings_with({name: probe}) != baseline:
            names.add(name)
    return names


def _settings_with(values: Mapping[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "KBFLOW_TASK_QUEUE",
                     "KBFLOW_DATA_DIR", STORE_URL_ENV, *values):
            patch.delenv(name, raising=False)
        for name, value in values.items():
            patch.setenv(name, value)
        return Settings.from_env()


def kbflow_command(service: str) -> tuple[str, Any]:
    """The `kbflow` command a service runs and its parsed parameters."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    name, *args = resolved(SERVICES[service]["command"])
    assert name in commands, f"{service}: `kbflow {name}` is not a command"
    context = commands[name].make_context(name, list(args))
    return name, context.params


# --- docker-compose.yml ------------------------------------------------------------------


def test_the_compose_file_has_the_services_of_a_production_setup() -> None:
    assert {"postgresql", "temporal", "temporal-ui", "kbflow-worker",
            "kbflow-codec"} <= set(SERVICES)
    assert {"kbflow-worker", "kbflow-codec", "kbflow-cli", "kbflow-api"} <= set(KBFLOW_SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_image_is_pinned(service: str) -> None:
    image = SERVICES[service]["image"]
    assert "$" not in image, f"{service}: the image must not depend on a variable"
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{service}: {image} has no tag"
    assert tag != "latest", f"{service}: {image}"
    if "build" in SERVICES[service]:
        assert image == KBFLOW_IMAGE, f"{service}: builds {image}"


def test_temporal_images_are_one_release() -> None:
    versions = {SERVICES[name]["image"].rpartition(":")[2]
                for name, service in SERVICES.items()
                if service["image"].startswith(("temporalio/server:", "temporalio/admin-tools:"))}
    assert len(versions) == 1, f"server and admin-tools must share a version: {versions}"
    assert re.fullmatch(r"1\.\d+\.\d+", versions.pop())


def test_secrets_are_required_from_the_environment_and_have_no_default() -> None:
    found = set()
    for service in SERVICES:
        for name, value in environment(service).items():
            if not SECRET_NAME.search(name):
                continue
            refs = list(references(value))
            assert len(refs) == 1 and re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), (
                f"{service}: {name} must be exactly ${{VARIABLE:?message}}, is {value!r}")
            found.add(refs[0][0])
    assert found == set(SECRETS)
    for text in strings(COMPOSE):
        for name, operator, _ in references(text):
            if SECRET_NAME.search(name):
                assert operator == ":?", f"${{{name}{operator}…}}: a secret with a default"
    raw = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"[0-9a-fA-F]{32}", raw), "a key-like literal in the compose file"


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_compose_refuses_to_run_without_each_secret(secret: str) -> None:
    without = {name: value for name, value in SECRETS.items() if name != secret}
    with pytest.raises(MissingVariable, match=secret):
        resolved(COMPOSE, without)
    with pytest.raises(MissingVariable, match=secret):
        resolved(COMPOSE, {**without, secret: ""})
    resolved(COMPOSE, SECRETS)  # and everything else resolves


def test_each_kbflow_process_gets_only_the_secrets_it_reads() -> None:
    worker, codec = environment("kbflow-worker"), environment("kbflow-codec")
    assert {MASTER_KEYS_ENV, KEY_ENV} <= set(worker) and TOKEN_ENV not in worker
    assert {MASTER_KEYS_ENV, TOKEN_ENV} <= set(codec)
    assert KEY_ENV not in codec and PARTY_KEYS_ENV not in codec


def test_kbflow_services_share_the_database_and_the_master_keys_and_no_file() -> None:
    for service in KBFLOW_SERVICES:
        data_dir = resolved(environment(service))["KBFLOW_DATA_DIR"]
        # No volume: the data dir is the container's own tmpfs (the state is in PostgreSQL).
        assert not [m for m in mounts(service) if m["target"] == data_dir], service
        assert data_dir in SERVICES[service]["tmpfs"], service
        assert not [m for m in mounts(service) if m["type"] == "volume"], service
    assert "kbflow-data" not in COMPOSE.get("volumes", {})
    for variable in (MASTER_KEYS_ENV, STORE_URL_ENV):
        assert len({environment(service)[variable] for service in KBFLOW_SERVICES}) == 1
    assert environment("kbflow-worker")[MASTER_KEYS_ENV] == (
        f"${{{MASTER_KEYS_ENV}:?set {MASTER_KEYS_ENV}, see deploy/env.example}}")


def test_kbflow_has_its_own_database_and_role_not_temporals() -> None:
    url = urlsplit(resolved(environment("kbflow-worker"))[STORE_URL_ENV])
    job = resolved(environment("kbflow-database"))
    temporal = resolved(environment("temporal"))
    assert url.scheme == "postgresql" and url.hostname == temporal["POSTGRES_SEEDS"]
    assert url.port == int(temporal["DB_PORT"])
    assert (url.username, url.password) == (job["KBFLOW_DB_USER"], job["KBFLOW_DB_PASSWORD"])
    assert url.path == "/" + job["KBFLOW_DB_NAME"]
    assert url.username != temporal["POSTGRES_USER"]
    assert job["KBFLOW_DB_NAME"] not in ("temporal", "temporal_visibility", "postgres")
    assert url.password == SECRETS["KBFLOW_DB_PASSWORD"]  # required, no default
    assert job["PGHOST"] == temporal["POSTGRES_SEEDS"]
    assert job["PGUSER"] == temporal["POSTGRES_USER"]  # the cluster's superuser creates it
    for service in KBFLOW_SERVICES:
        assert SERVICES[service]["depends_on"]["kbflow-database"] == {
            "condition": "service_completed_successfully"}, service


def test_the_kbflow_database_job_runs_a_script_shipped_in_deploy() -> None:
    config = SERVICES["kbflow-database"]
    assert config["image"] == SERVICES["postgresql"]["image"]  # its psql, the server's
    (script,) = config["command"]
    (mount,) = [m for m in mounts("kbflow-database") if script.startswith(m["target"] + "/")]
    assert mount["read_only"]
    host_script = ROOT / mount["source"] / os.path.relpath(script, mount["target"])
    text = host_script.read_text()
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    needed = {name for name, operator, _ in references(text) if operator == ":?"}
    assert needed == set(environment("kbflow-database"))
    (command,) = [line for line in text.splitlines() if line.startswith("psql ")]
    assert "PASSWORD" not in command  # psql reads it (\getenv), not its command line
    assert "\\getenv kbflow_password KBFLOW_DB_PASSWORD" in text


def test_the_worker_scales() -> None:
    worker = SERVICES["kbflow-worker"]
    assert "container_name" not in worker and not published("kbflow-worker")
    assert "healthcheck" not in worker  # nothing waits on one particular replica
    assert not [name for name, service in SERVICES.items()
                if "kbflow-worker" in service.get("depends_on", {})]


@pytest.mark.parametrize("service", KBFLOW_SERVICES)
def test_kbflow_environment_names_are_variables_kbflow_reads(service: str) -> None:
    unknown = set(environment(service)) - KEY_VARIABLES - settings_variables()
    assert not unknown, f"{service}: kbflow reads no {sorted(unknown)}"


def test_the_worker_settings_resolve_to_the_compose_services() -> None:
    env = resolved(environment("kbflow-worker"))
    settings = _settings_with(env)
    host, _, port = settings.temporal_address.partition(":")
    assert host in SERVICES and port == "7233"
    assert settings.task_queue == DEFAULT_TASK_QUEUE
    assert settings.data_dir == Path("/data")
    namespace_job = resolved(environment("temporal-namespace"))
    assert settings.namespace == namespace_job["NAMESPACE"]
    assert settings.namespace == resolved(environment("temporal-ui"))[
        "TEMPORAL_DEFAULT_NAMESPACE"]


def test_the_api_listens_on_its_published_port_with_a_read_only_tls_folder() -> None:
    name, _ = kbflow_command("kbflow-api")
    assert name == "api"
    settings = _settings_with(resolved(environment("kbflow-api")))
    host, _, port = settings.api_address.rpartition(":")
    assert host == "0.0.0.0"  # reachable through the published port
    ((address, host_port, container_port),) = published("kbflow-api")
    assert address == "127.0.0.1" and container_port == int(port) == host_port
    (mount,) = [m for m in mounts("kbflow-api") if m["target"] == str(settings.api_tls_path)]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert urlsplit(settings.api_base_url).port == host_port
    # the workers notify webhooks with kbflow's OIN and the API's URL (the same folder)
    worker = _settings_with(resolved(environment("kbflow-worker")))
    assert (worker.api_tls_path, worker.api_base_url) == (settings.api_tls_path,
                                                          settings.api_base_url)
    (mount,) = [m for m in mounts("kbflow-worker") if m["target"] == str(worker.api_tls_path)]
    assert mount["type"] == "bind" and mount["read_only"] is True


def test_party_keys_are_a_read_only_mount() -> None:
    for service in ("kbflow-worker", "kbflow-cli", "kbflow-api"):
        folder = resolved(environment(service))[PARTY_KEYS_ENV]
        (mount,) = [m for m in mounts(service) if m["target"] == folder]
        assert mount["type"] == "bind" and mount["read_only"] is True, service


def test_worker_runs_a_kbflow_command_and_drains_before_it_is_killed() -> None:
    name, _ = kbflow_command("kbflow-worker")
    assert name == "worker"
    worker = SERVICES["kbflow-worker"]
    assert duration(worker["stop_grace_period"]) >= GRACEFUL_SHUTDOWN + timedelta(seconds=10)
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker  # replicas need generated names


def test_codec_server_options_exist_and_match_the_ui() -> None:
    name, params = kbflow_command("kbflow-codec")
    assert name == "codec-server"
    assert params["host"] == "0.0.0.0"  # reachable through the published port
    ((address, host_port, container_port),) = published("kbflow-codec")
    assert (address, container_port) == ("127.0.0.1", params["port"])
    ui = resolved(environment("temporal-ui"))
    # No cluster-level codec endpoint: each operator sets their own, with their token.
    assert not [name for name in ui if "CODEC" in name]
    assert host_port == params["port"]
    ((_, ui_host_port, _),) = published("temporal-ui")
    assert params["ui_origin"] == [ui["TEMPORAL_CORS_ORIGINS"]]
    assert urlsplit(params["ui_origin"][0]).port == ui_host_port
    assert ui["TEMPORAL_ADDRESS"] == resolved(environment("kbflow-codec"))["TEMPORAL_ADDRESS"]


def test_ports_are_published_on_loopback_only() -> None:
    for service in SERVICES:
        for address, _, _ in published(service):
            assert address == "127.0.0.1", service
    assert not published("postgresql")


def test_depends_on_names_defined_services() -> None:
    one_shot = set()
    for service, config in SERVICES.items():
        depends = config.get("depends_on", {})
        targets = depends if isinstance(depends, dict) else {name: {} for name in depends}
        for target, condition in targets.items():
            assert target in SERVICES and target != service, f"{service} -> {target}"
            assert condition.get("condition", "service_started") in (
                "service_started", "service_healthy", "service_completed_successfully")
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            if condition.get("condition") == "service_completed_successfully":
                one_shot.add(target)
    for job in one_shot:
        assert SERVICES[job].get("restart", "no") == "no", f"{job} runs once"


def test_long_running_services_restart() -> None:
    for service, config in SERVICES.items():
        if service in ("temporal-schema", "temporal-namespace", "kbflow-database") or config.get(
                "profiles"):
            continue
        assert config.get("restart") == "unless-stopped", service


def test_temporal_runs_on_postgresql_with_kbflows_dynamic_config() -> None:
    env = resolved(environment("temporal"))
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] in SERVICES
    assert env["DB_PORT"] == "5432"
    assert SERVICES[env["POSTGRES_SEEDS"]]["image"].startswith("postgres:16")
    config_path = env["DYNAMIC_CONFIG_FILE_PATH"]
    (mount,) = [m for m in mounts("temporal")
                if config_path.startswith(m["target"].rstrip("/") + "/")]
    assert mount["read_only"]
    host_file = ROOT / mount["source"] / os.path.relpath(config_path, mount["target"])
    dynamic_config = yaml.safe_load(host_file.read_text())
    for key, values in dynamic_config.items():
        assert isinstance(values, list) and values, key
        for entry in values:
            assert set(entry) <= {"value", "constraints"} and "value" in entry, key
    assert dynamic_config["frontend.enableUpdateWorkflowExecution"] == [
        {"value": True, "constraints": {}}]
    assert SERVICES["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


@pytest.mark.parametrize("job", ["temporal-schema", "temporal-namespace"])
def test_admin_tools_jobs_run_scripts_shipped_in_deploy(job: str) -> None:
    config = SERVICES[job]
    assert config["image"].startswith("temporalio/admin-tools:")
    (script,) = config["command"]
    (mount,) = [m for m in mounts(job) if script.startswith(m["target"] + "/")]
    assert mount["read_only"]
    host_script = ROOT / mount["source"] / os.path.relpath(script, mount["target"])
    text = host_script.read_text()
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text
    needed = {name for name, operator, _ in references(text) if operator == ":?"}
    assert needed, f"{host_script.name} checks no variable"
    assert needed <= set(environment(job)), f"{job}: {needed - set(environment(job))}"


def test_the_namespace_job_creates_every_search_attribute_with_its_type() -> None:
    pairs = environment("temporal-namespace")["SEARCH_ATTRIBUTES"].split()
    expected = search_attributes.dev_server_args()[1::2]  # NAME=TYPE, as the dev server's
    assert pairs == expected
    script = (ROOT / "deploy" / "temporal" / "create-namespace.sh").read_text()
    loop = script[script.index("for pair in ${SEARCH_ATTRIBUTES}"):]
    assert "temporal operator search-attribute create" in loop
    assert re.search(r'--name "\$\{pair%%=\*\}" --type "\$\{pair#\*=\}"', loop)
    assert "exit 0" not in script  # an existing namespace still gets its attributes


def test_postgresql_keeps_its_data_in_a_volume_and_has_a_healthcheck() -> None:
    (mount,) = mounts("postgresql")
    assert mount["type"] == "volume" and mount["source"] in COMPOSE["volumes"]
    assert mount["target"] == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(SERVICES["postgresql"]["healthcheck"]["test"])


# --- Dockerfile -------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile instruction, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


def test_dockerfile_installs_the_project_with_pip_and_runs_as_non_root() -> None:
    steps = dockerfile()
    ((_, base),) = [step for step in steps if step[0] == "FROM"]
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", base), base
    installs = [i for i, (keyword, args) in enumerate(steps)
                if keyword == "RUN" and re.search(r"\bpip install --no-cache-dir \.(\s|$)", args)]
    assert len(installs) == 1, "one `pip install --no-cache-dir .` of the project, no extras"
    assert not [keyword for keyword, _ in steps if keyword in ("COPY", "ADD")], (
        "the sources are bind-mounted for the install, never copied into the image")
    users = [(i, args) for i, (keyword, args) in enumerate(steps) if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    last, user = users[-1]
    assert last > installs[0]
    assert user.split(":")[0] not in ("root", "0")
    assert (user.split(":")[0] in " ".join(args for _, args in steps)), "USER is never created"
    entrypoint = [json.loads(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    command = [json.loads(args) for keyword, args in steps if keyword == "CMD"]
    assert entrypoint[-1] == ["kbflow"] and command[-1] == ["worker"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "kbflow" in pyproject["project"]["scripts"]
    assert "worker" in typer.main.get_command(app).commands  # type: ignore[attr-defined]


# --- .dockerignore ----------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`)."""
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out, index = out + pattern[index:end + 1], end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends ``path`` (relative, with `/`): the last rule that matches it or
    one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    included = True
    for exception, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = exception
    return included


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        rules.append((exception, _pattern(line.lstrip("!").strip("/"))))
    return rules


#: Not walked (large or generated); the allowlist leaves them out of the build anyway.
SKIPPED_FOLDERS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def test_build_context_has_the_project_and_no_tests_keys_or_data() -> None:
    rules = dockerignore_rules()
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        files += [str((Path(folder) / name).relative_to(ROOT)) for name in names]
    sent = {path for path in files if in_build_context(path, rules)}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "README.md"}
    needed |= {f"{module}.py" for module in pyproject["tool"]["setuptools"]["py-modules"]}
    needed |= {f"{package.replace('.', '/')}/__init__.py"
               for package in pyproject["tool"]["setuptools"]["packages"]}
    assert needed <= sent, f"missing from the build context: {sorted(needed - sent)}"
    never = [".kbflow/master.keys", ".kbflow/keys.sqlite3", ".kbflow/codec.token",
             ".kbflow/pseudonym.key", ".kbflow/party-keys/IND.key", ".kbflow/outbox.sqlite3",
             "tests/test_cli.py", "tests/histories/03.json", "party-keys/IND.pub", ".env",
             "kbflow/master.keys", "encryption/IND.key", "kbflow/outbox.sqlite3-wal",
             "bench/bench_encryption.py", "deploy/env.example"]
    for path in [*never, *files]:
        if (path.startswith(("tests/", ".kbflow/", "bench/", "deploy/"))
                or re.search(r"(\.key|\.keys|\.token|\.sqlite3.*|\.env)$", path)
                or "histories" in path):
            assert not in_build_context(path, rules), f"{path} is sent to the build"


def test_each_worker_serves_metrics_on_the_compose_network_only() -> None:
    worker = SERVICES["kbflow-worker"]
    port = resolved(environment("kbflow-worker"))["KBFLOW_METRICS_PORT"]
    assert Settings(metrics_port=int(port)).metrics_port == int(port)
    assert worker["expose"] == [port]
    assert not published("kbflow-worker")
