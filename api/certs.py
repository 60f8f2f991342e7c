"""A development set of TLS material (``kbflow certs init DIR``): a CA, the API's server
certificate and one client certificate per party, each naming its organisation by a
fictional OIN in its subject ``serialNumber``, plus the OIN table ``parties.json``.

The layout is the one ``KBFLOW_API_TLS_DIR`` reads (``api.tls``). In production the
certificates are PKIoverheid's and the OIN table lists the real OINs; never use these.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.tls import TlsFiles
from kbflow.process import PARTY_NAMES, Party

#: Fictional OINs: the prefix 00000099 is assigned to no register. kbflow's own ends in 0.
KBFLOW_DEV_OIN = "00000099000000000000"
DEV_OINS: dict[Party, str] = {
    party: f"000000990000000{index:05d}" for index, party in enumerate(Party, start=1)}
#: How long development certificates are valid.
VALIDITY = dt.timedelta(days=730)


class CertsExistError(FileExistsError):
    """The folder holds TLS material already; the message names the file."""


def _name(common_name: str, organisation: str, oin: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                  x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if oin is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, oin))
    return x509.Name(attributes)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_certificate(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def make_ca(common_name: str = "kbflow development CA"
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key (also for tests that need a second,
    unknown CA)."""
    key = _key()
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name, "kbflow development", None)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256()))
    return certificate, key


def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, common_name: str,
          organisation: str, oin: str | None, server: bool = False
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate signed by ``ca`` naming ``oin`` in its subject ``serialNumber``: a
    server certificate for ``localhost`` / ``127.0.0.1`` / ``::1`` if ``server``, else
    a client certificate."""
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(common_name, organisation, oin))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # the server's certificate also identifies kbflow as a client (its notifications)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
            else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def init_dev_certs(folder: Path) -> TlsFiles:
    """Write a development set into ``folder`` (created if missing): ``ca.crt``,
    ``server.crt`` / ``server.key`` (kbflow, ``KBFLOW_DEV_OIN``), ``<PARTY>.crt`` /
    ``<PARTY>.key`` for every party (``DEV_OINS``) and ``parties.json``. Keys are mode
    0600. The CA's key is not kept: nothing more can be signed with it.

    Raises:
        CertsExistError: ``folder`` already holds one of these files (nothing written).
    """
    files = TlsFiles(folder)
    targets = [files.ca, files.server_certificate, files.server_key, files.parties]
    for party in Party:
        targets += [files.client_certificate(party), files.client_key(party)]
    for target in targets:
        if target.exists():
            raise CertsExistError(f"{target}: exists already; choose an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca()
    _write_certificate(files.ca, ca)
    server, server_key = issue(ca, ca_key, common_name="localhost", organisation="kbflow",
                               oin=KBFLOW_DEV_OIN, server=True)
    _write_certificate(files.server_certificate, server)
    _write_key(files.server_key, server_key)
    for party in Party:
        certificate, key = issue(ca, ca_key, common_name=f"{party.value} (development)",
                                 organisation=PARTY_NAMES[party], oin=DEV_OINS[party])
        _write_certificate(files.client_certificate(party), certificate)
        _write_key(files.client_key(party), key)
    table = {"parties": [{"oin": DEV_OINS[party], "party": party.value,
                          "name": PARTY_NAMES[party]} for party in Party]}
    files.parties.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return files
