"""Per-party key pairs; packets sealed to their recipient (PROCESS.md §2 "secure sharing").

A packet in a party's outbox is a NaCl sealed box (X25519 + XSalsa20-Poly1305, PyNaCl) to
that party's public key: only the holder of the party's private key opens it, so no party
reads another's packets. Delivering needs only the public keys; ``kbflow inbox PARTY``
needs PARTY's private key.

Keys live in ``KBFLOW_PARTY_KEYS_DIR`` (default ``<data dir>/party-keys``): ``<PARTY>.pub``
(public, hex) and, for development and the demo, ``<PARTY>.key`` (private, hex, mode 0600),
created on first use. In production each party keeps its ``.key`` to itself.
"""

from __future__ import annotations

from pathlib import Path

from nacl.public import PrivateKey, PublicKey, SealedBox

from encryption.secret_files import read_or_create_secret
from kbflow.process import Party
from kbflow.settings import PARTY_KEYS_ENV as PARTY_KEYS_ENV
from kbflow.settings import Settings


class PartyKeyMissing(LookupError):
    """A party's key is not available here; the message names the party and the file."""


class PartyKeys:
    """The parties' key pairs in a folder."""

    def __init__(self, folder: Path, *, create_missing: bool = True) -> None:
        self.folder = folder
        self.create_missing = create_missing

    @classmethod
    def open(cls, settings: Settings) -> PartyKeys:
        """The folder ``settings.party_keys_path``: ``KBFLOW_PARTY_KEYS_DIR`` if set, else
        ``<data dir>/party-keys``."""
        # ops' folder of the parties' public keys: never make keys there
        return cls(settings.party_keys_path, create_missing=settings.party_keys_dir is None)

    def _create(self, party: Party) -> None:
        private = PrivateKey(bytes.fromhex(read_or_create_secret(
            self.folder / f"{party.value}.key", lambda: bytes(PrivateKey.generate()).hex())))
        (self.folder / f"{party.value}.pub").write_text(bytes(private.public_key).hex())

    def public_key(self, party: Party) -> PublicKey:
        """``party``'s public key (created with its private key if missing and allowed).

        Raises:
            PartyKeyMissing: no public key and creation not allowed.
        """
        path = self.folder / f"{party.value}.pub"
        if not path.exists():
            if not self.create_missing:
                raise PartyKeyMissing(f"{party.value}: no public key at {path}")
            self._create(party)
        return PublicKey(bytes.fromhex(path.read_text().strip()))

    def private_key(self, party: Party) -> PrivateKey:
        """``party``'s private key.

        Raises:
            PartyKeyMissing: this machine does not hold it.
        """
        path = self.folder / f"{party.value}.key"
        if not path.exists():
            raise PartyKeyMissing(f"{party.value}: no private key at {path}")
        return PrivateKey(bytes.fromhex(path.read_text().strip()))

    def seal(self, party: Party, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` so that only ``party`` can read it."""
        return SealedBox(self.public_key(party)).encrypt(plaintext)

    def unseal(self, party: Party, sealed: bytes) -> bytes:
        """Open a box sealed to ``party``.

        Raises:
            PartyKeyMissing: this machine does not hold ``party``'s private key.
            nacl.exceptions.CryptoError: the box was not sealed to ``party``.
        """
        return SealedBox(self.private_key(party)).decrypt(sealed)
