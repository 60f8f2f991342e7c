"""The Temporal payload codec: every payload encrypted with its case's data key.

Workflow input, update and query arguments and results, activity arguments and results,
memo values, headers and (with ``DefaultFailureConverterWithEncodedAttributes``) failure
messages and stack traces all pass through ``CaseCodec``. The serialization context names
the workflow, so each case's payloads use that case's data key (``encryption.keys``);
payloads without a workflow context use the system key.

Encrypted payload: metadata ``encoding = binary/kbflow-aes256gcm`` and ``kbflow-key-id``;
data = 12-byte nonce + AES-256-GCM(serialized original payload), the key id as associated
data. Payloads without that encoding (histories recorded before encryption, and public
payloads) decode as they are.

Public payloads (progress, never personal data) stay in plaintext: ``PublicPayloadConverter``
(pydantic's JSON, byte for byte) marks the payload of a ``kbflow.public.Public`` model, a
list or tuple of one model, a ``kbflow.public.PublicText`` (summaries, details) or the SDK's
``WorkflowMetadata`` whose current details are a ``PublicText``, with metadata
``kbflow-public: <kind>``. ``CaseCodec.encode`` trusts no marker: it leaves a marked
payload in plaintext (and drops the marker) only if ``is_public_payload`` re-checks it
(the data decodes as the kind it claims, the value is public, and encoding that value
again gives exactly the same bytes: so no byte outside the public value can hide in it);
any other payload, a forged marker included, is encrypted as before.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    ActivitySerializationContext,
    BinaryNullPayloadConverter,
    BinaryPlainPayloadConverter,
    BinaryProtoPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    JSONProtoPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

import kbflow.progress  # noqa: F401  (defines the Public models and wordings checked here)
from encryption.keys import SYSTEM_SCOPE, KeyStore, KeyUnavailable
from kbflow.public import Public, PublicText, public_name

ENCODING = b"binary/kbflow-aes256gcm"
KEY_ID = "kbflow-key-id"
#: Metadata key of a public payload; its value is the kind (``public_kind``).
PUBLIC = "kbflow-public"
_TEXT, _METADATA, _MODEL, _MODELS = "text", "workflow-metadata", "model:", "models:"
_EMPTY = "empty-list"


def public_kind(value: object) -> str | None:
    """The marker of a value that may be left in plaintext, or ``None``: ``text`` for a
    ``PublicText``, ``model:<name>`` for a ``Public`` model, ``models:<name>`` for a list
    or tuple of one ``Public`` model, ``empty-list`` for an empty one (which holds
    nothing: e.g. the ``awaiting`` query of a closed case), ``workflow-metadata`` for the
    SDK's
    ``WorkflowMetadata`` (the ``__temporal_workflow_metadata`` query: the workflow's
    definition from its code, and its current details)."""
    if isinstance(value, PublicText):
        return _TEXT
    if isinstance(value, Public):
        return _MODEL + public_name(type(value))
    if isinstance(value, list | tuple) and not value:
        return _EMPTY
    if isinstance(value, list | tuple) and isinstance(value[0], Public):
        model = type(value[0])
        if all(type(item) is model for item in value):
            return _MODELS + public_name(model)
    if isinstance(value, WorkflowMetadata):
        return _METADATA
    return None


@functools.lru_cache(maxsize=64)
def _adapter(kind: str) -> TypeAdapter[Any]:
    """The validator of a kind's plain-JSON data (built once: building one takes longer
    than using it).

    Raises:
        ValueError: unknown kind, or no such ``Public`` model.
    """
    if kind == _EMPTY:
        return TypeAdapter(list[None])
    if kind == _TEXT:
        return TypeAdapter(str)
    if kind.startswith((_MODEL, _MODELS)):
        model = Public.registry.get(kind.partition(":")[2])
        if model is None:
            raise ValueError("no such Public model")
        many = kind.startswith(_MODELS)
        return TypeAdapter(list[model] if many else model)  # type: ignore[valid-type]
    raise ValueError("unknown kind")


def _public_value(kind: str, payload: Payload) -> Any:
    """The value of ``payload`` as ``kind``, checked to be public.

    Raises:
        ValueError: it is not (unknown kind, other encoding, not that type's data).
    """
    encoding = payload.metadata.get("encoding")
    if kind == _METADATA:
        if encoding != b"json/protobuf":
            raise ValueError("not JSON protobuf")
        metadata = _PROTO.from_payload(payload, WorkflowMetadata)
        PublicText.parse(metadata.current_details)
        return metadata
    if encoding != b"json/plain":
        raise ValueError("not plain JSON")
    adapter = _adapter(kind)
    if kind == _EMPTY:
        if adapter.validate_json(payload.data, strict=True):
            raise ValueError("not empty")
        return []
    if kind == _TEXT:
        return PublicText.parse(adapter.validate_json(payload.data, strict=True))
    return adapter.validate_json(payload.data)


def is_public_payload(payload: Payload) -> bool:
    """Whether ``payload`` carries a public marker that holds: its data decodes as the
    marked kind and encodes back to exactly the same bytes (``PublicPayloadConverter``'s
    encoding). Never raises: any doubt is ``False``, and the payload gets encrypted.

    The answer depends on the payload's metadata and data alone, so it is remembered for
    the most recent ``CHECKED_PAYLOADS`` of them (``_holds``): the same summary, details or
    progress is checked once, not on every conversion and encode."""
    kind = payload.metadata.get(PUBLIC, b"").decode(errors="replace")
    if not kind:
        return False
    metadata = tuple(sorted((key, value) for key, value in payload.metadata.items()
                            if key != PUBLIC))
    return _holds(kind, metadata, payload.data)


#: How many answers of ``is_public_payload`` (by marker, other metadata and data) are
#: remembered.
CHECKED_PAYLOADS = 4096


@functools.lru_cache(maxsize=CHECKED_PAYLOADS)
def _holds(kind: str, metadata: tuple[tuple[str, bytes], ...], data: bytes) -> bool:
    """``is_public_payload`` of a payload with exactly this marker, other metadata (sorted
    pairs) and data."""
    payload = Payload(metadata=dict(metadata), data=data)
    try:
        value = _public_value(kind, payload)
    except (ValueError, ValidationError, RuntimeError, TypeError):
        return False
    again = _PROTO.to_payload(value) if kind == _METADATA else _JSON.to_payload(value)
    return again is not None and again.data == payload.data


class PublicJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """pydantic's JSON converter (same bytes), marking public values' payloads."""

    def to_payload(self, value: Any) -> Payload | None:
        """The pydantic JSON payload of ``value``, with ``kbflow-public`` if it is public."""
        return _marked(super().to_payload(value), value)


class PublicProtoPayloadConverter(JSONProtoPayloadConverter):
    """The SDK's JSON protobuf converter, marking a ``WorkflowMetadata`` whose current
    details are a ``PublicText``."""

    def to_payload(self, value: Any) -> Payload | None:
        """The JSON payload of a protobuf ``value``, marked if it is public."""
        return _marked(super().to_payload(value), value)


def _marked(payload: Payload | None, value: Any) -> Payload | None:
    kind = public_kind(value)
    if payload is not None and kind is not None:
        payload.metadata[PUBLIC] = kind.encode()
        if not is_public_payload(payload):
            del payload.metadata[PUBLIC]
    return payload


_JSON, _PROTO = PydanticJSONPlainPayloadConverter(), JSONProtoPayloadConverter()


class PublicPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters with pydantic JSON, public payloads marked."""

    def __init__(self) -> None:
        super().__init__(
            BinaryNullPayloadConverter(),
            BinaryPlainPayloadConverter(),
            PublicProtoPayloadConverter(),
            BinaryProtoPayloadConverter(),
            PublicJSONPayloadConverter(),
        )


class CaseCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM with the data key of the payload's case (its workflow id)."""

    def __init__(self, keys: KeyStore, scope: str = SYSTEM_SCOPE) -> None:
        self.keys = keys
        self.scope = scope

    def with_context(self, context: SerializationContext) -> CaseCodec:
        """A codec bound to the workflow the payloads belong to."""
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        return CaseCodec(self.keys, workflow_id or SYSTEM_SCOPE)

    def _encryption_key(self) -> tuple[str, bytes]:
        try:
            return self.keys.key_for_scope(self.scope)
        except KeyUnavailable:
            # The case was erased: what it still writes (its final, personal-data-free
            # status) goes under the system key.
            return self.keys.key_for_scope(SYSTEM_SCOPE)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload but a public one (``is_public_payload``: marked and
        re-checked), which is left in plaintext without its marker (so that a plain
        ``json/plain`` payload reads as JSON anywhere, the ``temporal`` CLI included);
        raises nothing for well-formed input. The key is fetched only for a payload to
        encrypt: public ones alone (a trace header, ``kbflow.trace.TraceHeader``) need
        none, e.g. from a read-only data dir that holds no system key."""
        cipher: AESGCM | None = None
        key_id = ""
        encoded = []
        for payload in payloads:
            if is_public_payload(payload):
                plain = Payload()
                plain.CopyFrom(payload)
                del plain.metadata[PUBLIC]  # as any client reads it: e.g. the CLI's JSON
                encoded.append(plain)
                continue
            if cipher is None:
                key_id, key = self._encryption_key()
                cipher = AESGCM(key)
            nonce = secrets.token_bytes(12)
            data = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(Payload(
                metadata={"encoding": ENCODING, KEY_ID: key_id.encode()},
                data=nonce + data,
            ))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each payload encrypted by this codec; others pass unchanged.

        Raises:
            KeyUnavailable: the payload's case was erased, or its key is unknown.
            ValueError: the ciphertext was tampered with.
        """
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata[KEY_ID].decode()
            key = self.keys.key(key_id)
            try:
                plain = AESGCM(key).decrypt(payload.data[:12], payload.data[12:],
                                            key_id.encode())
            except InvalidTag:
                raise ValueError(f"payload under key {key_id}: authentication failed") from None
            decoded.append(Payload.FromString(plain))
        return decoded


def encrypted_data_converter(keys: KeyStore) -> DataConverter:
    """kbflow's data converter: pydantic JSON (public values marked), ``CaseCodec``,
    failures encoded too.

    The worker, the CLI, the tests and the replayer use this one converter.
    """
    return DataConverter(
        payload_converter_class=PublicPayloadConverter,
        payload_codec=CaseCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
