"""Pseudonymous data-subject ids for the processing log (LDV recommends pseudonyms).

A subject id is a keyed hash (HMAC-SHA256) of the person's normalised name
(``kbflow.events.subject_name``: NFC, case-folded, whitespace collapsed, so a name typed
in NFD gives the same id as in NFC) and date of birth: stable across cases and steps, so
that an art. 15 request can be answered from the log, and meaningless without the key. The
key comes from ``KBFLOW_PSEUDONYM_KEY`` (64 hex characters) or, for development, from
``<data dir>/pseudonym.key`` (created, mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from encryption.secret_files import read_or_create_secret
from kbflow.events import subject_name
from kbflow.items import Person
from kbflow.settings import PSEUDONYM_KEY_ENV as KEY_ENV
from kbflow.settings import Settings


class Pseudonymiser:
    """Turns a person into their data-subject id: ``subj-`` + 32 hex characters."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("pseudonym key: needs at least 32 bytes")
        self._key = key

    def __call__(self, person: Person) -> str:
        name = subject_name(person.name)
        message = f"{name}|{person.date_of_birth.isoformat()}".encode()
        return "subj-" + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def subkey(self, purpose: bytes) -> bytes:
        """A key for another keyed hash of kbflow (``purpose`` names it, e.g. case refs):
        HMAC-SHA256 of ``purpose`` under the pseudonym key, which itself never leaves."""
        return hmac.new(self._key, b"kbflow subkey|" + purpose, hashlib.sha256).digest()

    @classmethod
    def load(cls, settings: Settings) -> Pseudonymiser:
        """The key from ``settings.pseudonym_key`` (``KBFLOW_PSEUDONYM_KEY``), else from (or
        new in) ``settings.pseudonym_key_path``.

        Raises:
            ValueError: the variable is set but is not 64 hex characters.
        """
        if settings.pseudonym_key:
            try:
                return cls(bytes.fromhex(settings.pseudonym_key))
            except ValueError:
                raise ValueError(f"{KEY_ENV}: must be 64 hex characters") from None
        key = read_or_create_secret(settings.pseudonym_key_path, lambda: secrets.token_hex(32))
        return cls(bytes.fromhex(key))
