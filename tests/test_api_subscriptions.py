"""``/v1/subscriptions`` over real mutual TLS (``api.routes.subscriptions``): a party
registers, lists, reads and removes its webhooks; a subscription belongs to the caller's
OIN (two GIs, each with its own certificate, see only their own); a bad URL is a 400
naming ``url`` that never echoes it and stores nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.client import Client

from activities.outbox_store import OutboxStore
from api.certs import DEV_OINS, KBFLOW_DEV_OIN, issue, make_ca
from api.context import ApiContext
from api.tls import PartyTable, TlsFiles, own_oin
from encryption.keys import KeyStore
from kbflow.notifications import MAX_SUBSCRIPTIONS_PER_OIN, MAX_URL_LENGTH
from kbflow.process import PARTY_NAMES, Party
from kbflow.settings import Settings
from tests.api_harness import ApiEndpoint, serve_api

#: A second GI (several GIs exist, each with its own OIN and certificate).
SECOND_GI_OIN = "00000099000000099002"
SECOND_GI = "GI-2"


def _write(folder: Path, name: str, certificate: x509.Certificate,
           key: ec.EllipticCurvePrivateKey | None = None) -> None:
    (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (folder / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def two_gi_tls(folder: Path) -> TlsFiles:
    """The layout of ``kbflow certs init`` with one more GI (``GI-2.crt``/``.key``)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca()
    _write(folder, "ca", ca)
    server, server_key = issue(ca, ca_key, common_name="localhost", organisation="kbflow",
                               oin=KBFLOW_DEV_OIN, server=True)
    _write(folder, "server", server, server_key)
    rows = []
    for party in Party:
        certificate, key = issue(ca, ca_key, common_name=party.value,
                                 organisation=PARTY_NAMES[party], oin=DEV_OINS[party])
        _write(folder, party.value, certificate, key)
        rows.append({"oin": DEV_OINS[party], "party": party.value, "name": PARTY_NAMES[party]})
    certificate, key = issue(ca, ca_key, common_name=SECOND_GI, organisation="GI twee",
                             oin=SECOND_GI_OIN)
    _write(folder, SECOND_GI, certificate, key)
    rows.append({"oin": SECOND_GI_OIN, "party": "GI", "name": "GI twee (fictional)"})
    (folder / "parties.json").write_text(json.dumps({"parties": rows}))
    return TlsFiles(folder)


def second_gi(endpoint: ApiEndpoint) -> httpx.AsyncClient:
    """A client with the second GI's certificate."""
    import ssl

    context = ssl.create_default_context(cafile=str(endpoint.files.ca))
    folder = endpoint.files.folder
    context.load_cert_chain(folder / f"{SECOND_GI}.crt", folder / f"{SECOND_GI}.key")
    return httpx.AsyncClient(base_url=endpoint.base_url, verify=context,
                             timeout=httpx.Timeout(30.0))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return two_gi_tls(tmp_path_factory.mktemp("api-tls"))


@pytest_asyncio.fixture
async def endpoint(tls_files: TlsFiles, tmp_path: Path, client: Client, store: OutboxStore,
                   keys: KeyStore) -> AsyncIterator[ApiEndpoint]:
    api_context = ApiContext(settings=Settings(data_dir=tmp_path), client=client,
                             parties=PartyTable.load(tls_files.parties),
                             oin=own_oin(tls_files), keys=keys, outbox=store)
    async with serve_api(api_context, tls_files) as served:
        yield served


HOOK = "https://indigo.example/kbflow/notifications"


async def test_a_party_registers_lists_reads_and_removes_its_webhook(
        endpoint: ApiEndpoint, store: OutboxStore) -> None:
    async with endpoint.client(Party.IND) as ind:
        made = await ind.post("/v1/subscriptions", json={"url": HOOK})
        assert made.status_code == 201, made.text
        subscription = made.json()
        assert subscription["url"] == HOOK and subscription["party"] == "IND"
        assert subscription["created_at"].endswith("Z")
        location = made.headers["Location"]
        assert location == f"/v1/subscriptions/{subscription['id']}"
        assert (await ind.get(location)).json() == subscription
        assert (await ind.get("/v1/subscriptions")).json() == {
            "subscriptions": [subscription]}
        again = await ind.post("/v1/subscriptions", json={"url": HOOK})
        assert again.status_code == 200 and again.json() == subscription
        assert again.headers["Location"] == location
        [row] = store.subscriptions.subscription_rows()
        assert (row.party, row.oin, row.url) == ("IND", DEV_OINS[Party.IND], HOOK)

        removed = await ind.delete(location)
        assert removed.status_code == 204 and removed.content == b""
        gone = await ind.get(location)
        assert gone.status_code == 404
        assert gone.json()["type"] == "urn:kbflow:problem:not-found"
        assert (await ind.delete(location)).status_code == 404
        assert (await ind.get("/v1/subscriptions")).json() == {"subscriptions": []}
    assert store.subscriptions.subscription_rows() == []


async def test_a_subscription_belongs_to_its_oin_not_only_its_party(
        endpoint: ApiEndpoint, store: OutboxStore) -> None:
    async with endpoint.client(Party.GI) as first, second_gi(endpoint) as second, \
            endpoint.client(Party.IND) as ind:
        made = (await first.post("/v1/subscriptions", json={"url": HOOK})).json()
        location = f"/v1/subscriptions/{made['id']}"
        assert made["party"] == "GI"
        # the second GI: the same party, another organisation
        assert (await second.get("/v1/subscriptions")).json() == {"subscriptions": []}
        for other in (second, ind):
            for response in (await other.get(location), await other.delete(location)):
                assert response.status_code == 403
                problem = response.json()
                assert problem["type"] == "urn:kbflow:problem:forbidden"
                assert "only its own subscriptions" in problem["detail"]
        # the same URL is the second GI's own subscription, not the first one's
        own = await second.post("/v1/subscriptions", json={"url": HOOK})
        assert own.status_code == 201 and own.json()["id"] != made["id"]
        assert (await first.get("/v1/subscriptions")).json() == {"subscriptions": [made]}
    oins = {row.oin for row in store.subscriptions.subscription_rows("GI")}
    assert oins == {DEV_OINS[Party.GI], SECOND_GI_OIN}


BAD_URLS = [
    ("http://indigo.example/hook", "http:// only to a loopback host"),
    ("https://kbflow:geheim-wachtwoord@indigo.example/hook", "must not hold a user or password"),
    ("ftp://indigo.example/hook", "must be an https:// URL with a host"),
    ("https:///hook", "must be an https:// URL with a host"),
    ("https://indigo.example/hook#Fenna-Fictief", "must not have a fragment"),
    ("https://indigo.example:99999/hook", "valid host and port"),
    ("https://indigo.example/hook for Fenna", "must not hold spaces"),
    ("https://indigo.example/Fenna-\u00e9", "must be ASCII"),
    ("https://indigo.example/" + "x" * MAX_URL_LENGTH, "at most 2048 characters"),
]

FORBIDDEN = "must not be an address in a private, link-local, multicast, reserved"
NOT_CANONICAL = "must write an IPv4 address as four decimal numbers"
#: Server-side request forgery: each an address inside kbflow's network, or a number
#: some client reads as one.
SSRF_URLS = [
    ("https://169.254.169.254/latest/meta-data", FORBIDDEN),  # a cloud's metadata
    ("https://10.0.0.5/hook", FORBIDDEN),
    ("https://172.16.3.4/hook", FORBIDDEN),
    ("https://192.168.1.1/x", FORBIDDEN),
    ("https://100.64.0.1/x", FORBIDDEN),  # shared address space (carrier NAT)
    ("https://0.0.0.0/x", FORBIDDEN),
    ("https://224.0.0.1/x", FORBIDDEN),  # multicast
    ("https://240.0.0.1/x", FORBIDDEN),  # reserved
    ("https://[::]/x", FORBIDDEN),
    ("https://[fe80::1]/x", FORBIDDEN),
    ("https://[fd00::5]/x", FORBIDDEN),  # unique local
    ("https://[ff02::1]/x", FORBIDDEN),
    ("https://[::ffff:10.0.0.1]/x", FORBIDDEN),  # IPv4-mapped
    ("https://[::ffff:169.254.169.254]/x", FORBIDDEN),
    ("https://[2002:a00:1::]/x", FORBIDDEN),  # 6to4 of 10.0.0.1
    ("https://0x7f000001/x", NOT_CANONICAL),  # hex
    ("https://2130706433/x", NOT_CANONICAL),  # a bare integer
    ("https://0177.0.0.1/x", NOT_CANONICAL),  # octal
    ("https://0xa9.254.169.254/x", NOT_CANONICAL),
    ("https://10.5/x", NOT_CANONICAL),  # fewer than four parts
    ("https://10.0.0.5./x", NOT_CANONICAL),
    ("https://%31%30.0.0.5/x", NOT_CANONICAL),
    ("https://%31%30.0.0.%35/x", "must not percent-encode the host"),
    ("https://[fe80::1%25eth0]/x", FORBIDDEN),
]
#: Personal data never goes in a URI (the rule of the API's own queries).
PERSONAL_QUERY_URLS = [
    ("https://indigo.example/hook?vnummer=1234567890", "looks like a V-nummer or a date"),
    ("https://indigo.example/hook?geboren=2015-06-01", "looks like a V-nummer or a date"),
    ("https://indigo.example/hook?a=1&geboren=2015%2D06%2D01", "looks like a V-nummer"),
]
BAD_URLS += SSRF_URLS + PERSONAL_QUERY_URLS


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
async def test_a_bad_webhook_url_is_400_naming_url_never_echoing_it(
        endpoint: ApiEndpoint, store: OutboxStore, url: str, reason: str) -> None:
    async with endpoint.client(Party.IND) as ind:
        response = await ind.post("/v1/subscriptions", json={"url": url})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:kbflow:problem:invalid-input"
    assert [param["name"] for param in problem["invalidParams"]] == ["url"]
    assert any(reason in param["reason"] for param in problem["invalidParams"]), problem
    assert url not in response.text
    host = urlsplit(url).hostname
    assert host is None or host not in response.text
    for secret in ("geheim-wachtwoord", "Fenna", "x" * 100, "1234567890", "2015"):
        assert secret not in response.text
    assert store.subscriptions.subscription_rows() == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "https://127.0.0.1/hook", "http://127.5.6.7/hook",
    "http://localhost:8080/hook", "https://localhost/hook", "http://[::1]:8080/hook",
    "https://[::1]/hook", "https://203.0.113.9.example/hook", "https://192.0.2.1.nip.example/x",
    "https://[2001:4860:4860::8888]/hook", "https://8.8.8.8/hook",
    "https://indigo.example/hook?token=a1b2c3&since=42",
])
async def test_loopback_and_public_webhooks_are_accepted(
        endpoint: ApiEndpoint, store: OutboxStore, url: str) -> None:
    """The development exception: loopback (``localhost``, 127.0.0.0/8, ``::1``) over
    http or https; public addresses and DNS names over https; a query of ids."""
    async with endpoint.client(Party.IND) as ind:
        response = await ind.post("/v1/subscriptions", json={"url": url})
    assert response.status_code == 201, response.text
    assert [row.url for row in store.subscriptions.subscription_rows()] == [url]


@pytest.mark.parametrize(("body", "name"), [
    ({"url": 12}, "url"),
    ({}, "url"),
    ({"url": HOOK, "secret": "geheim"}, "secret"),
    ([HOOK], "body"),
])
async def test_a_malformed_body_is_400_naming_the_field(
        endpoint: ApiEndpoint, store: OutboxStore, body: object, name: str) -> None:
    async with endpoint.client(Party.IND) as ind:
        response = await ind.post("/v1/subscriptions", json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"] == "urn:kbflow:problem:invalid-input"
    assert name in [param["name"] for param in problem["invalidParams"]]
    assert "geheim" not in response.text
    assert store.subscriptions.subscription_rows() == []


async def test_not_json_and_a_bad_id_are_400(endpoint: ApiEndpoint) -> None:
    async with endpoint.client(Party.IND) as ind:
        broken = await ind.post("/v1/subscriptions", content=b'{"url": "https://a.example',
                                headers={"Content-Type": "application/json"})
        assert broken.status_code == 400
        assert broken.json()["type"] == "urn:kbflow:problem:invalid-input"
        # a lone surrogate (valid JSON, no valid text): refused, never a 500
        surrogate = await ind.post("/v1/subscriptions",
                                   content=b'{"url": "https://a.example/\\ud800"}',
                                   headers={"Content-Type": "application/json"})
        assert surrogate.status_code == 400, surrogate.text
        assert [p["name"] for p in surrogate.json()["invalidParams"]] == ["url"]
        for method in ("GET", "DELETE"):
            bad_id = await ind.request(method, "/v1/subscriptions/not-an-id")
            assert bad_id.status_code == 400
            assert [p["name"] for p in bad_id.json()["invalidParams"]] == ["subscriptionId"]


async def test_an_organisation_holds_a_bounded_number_of_webhooks(
        endpoint: ApiEndpoint, store: OutboxStore) -> None:
    async with endpoint.client(Party.DTV) as dtv:
        for number in range(MAX_SUBSCRIPTIONS_PER_OIN):
            made = await dtv.post("/v1/subscriptions",
                                  json={"url": f"https://istv.example/hook/{number}"})
            assert made.status_code == 201
        refused = await dtv.post("/v1/subscriptions", json={"url": "https://istv.example/more"})
        assert refused.status_code == 409
        assert refused.json()["type"] == "urn:kbflow:problem:conflict"
        assert f"at most {MAX_SUBSCRIPTIONS_PER_OIN}" in refused.json()["detail"]
        # one registered before is still answered (the same subscription)
        assert (await dtv.post("/v1/subscriptions",
                               json={"url": "https://istv.example/hook/0"})).status_code == 200
    assert len(store.subscriptions.subscription_rows("DTV")) == MAX_SUBSCRIPTIONS_PER_OIN


async def test_without_a_certificate_subscriptions_are_401(endpoint: ApiEndpoint,
                                                           store: OutboxStore) -> None:
    async with endpoint.anonymous() as anonymous:
        for response in (await anonymous.get("/v1/subscriptions"),
                         await anonymous.post("/v1/subscriptions", json={"url": HOOK}),
                         await anonymous.delete(f"/v1/subscriptions/sub-{'0' * 32}")):
            assert response.status_code == 401
            assert response.json()["type"] == "urn:kbflow:problem:unauthenticated"
    assert store.subscriptions.subscription_rows() == []
