"""The Temporal payload codec: every payload encrypted with its case's data key.

Workflow input, update and query arguments and results, activity arguments and results,
memo values, headers and (with ``DefaultFailureConverterWithEncodedAttributes``) failure
messages and stack traces all pass through ``CaseCodec``. The serialization context names
the workflow, so each case's payloads use that case's data key (``encryption.keys``);
payloads without a workflow context use the system key.

Encrypted payload: metadata ``encoding = binary/kbflow-aes256gcm`` and ``kbflow-key-id``;
data = 12-byte nonce + AES-256-GCM(serialized original payload), the key id as associated
data. Payloads without that encoding (histories recorded before encryption) decode as
they are.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from encryption.keys import SYSTEM_SCOPE, KeyStore, KeyUnavailable

ENCODING = b"binary/kbflow-aes256gcm"
KEY_ID = "kbflow-key-id"


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
        """Encrypt each payload; raises nothing for well-formed input."""
        key_id, key = self._encryption_key()
        cipher = AESGCM(key)
        encoded = []
        for payload in payloads:
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
    """kbflow's data converter: pydantic JSON, ``CaseCodec``, failures encoded too.

    The worker, the CLI, the tests and the replayer use this one converter.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=CaseCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
