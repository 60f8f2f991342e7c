"""Case refs that no person chooses: ``KB-<year>-<8 characters>-<check character>``.

A case ref is the suffix of the case's workflow id, which Temporal never encrypts and which
outlives erasure, so it must say nothing about a person. No heuristic can tell whether a
chosen ref does (``KB-2026-AYSE1985``), so kbflow makes every ref itself: eight
characters drawn at random (``new_case_ref``) or from a keyed hash of the start's
idempotency key (``derived_case_ref``: the same start gives the same ref), over an
alphabet without vowels (no words, no names) and without characters that look alike
(``ALPHABET``), plus a check character, so a mistyped ref is caught before Temporal is
asked.

The check character: with the alphabet's size a prime (19), the weighted sum
``year + sum(position * value)`` over the eight characters and the check character
(positions 1 to 9) is a multiple of 19. Every single substituted character and every swap
of two adjacent ones (and every single wrong or swapped digit of the year) changes that
sum by a non-multiple of 19, so each is caught. (Luhn mod N, the usual choice, misses the
swap of the alphabet's first and last characters; a prime-modulus weighted sum misses
none.)

Refs made before this format (``KB-<year>-<6-12 capitals or digits>``, no check
character: ``LEGACY_PATTERN``) still address their cases; they are never made again.

This module is pure: the caller supplies the key of ``derived_case_ref``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

#: The characters of a ref after the year: digits 2-9 and consonants, without vowels (and
#: Y), so no word or name can appear, and of each look-alike group at most one member
#: (0 O D Q: none; 1 I L: none; 2 Z: 2; 5 S: none; 6 G: 6; 8 B: 8; U V: none).
ALPHABET = "2346789CFHJKMNPRTWX"
#: How many random (or derived) characters a ref has before its check character.
LENGTH = 8
#: A ref of the current format, e.g. ``KB-2026-7K4M2XCH-R``.
PATTERN = re.compile(rf"^KB-([0-9]{{4}})-([{ALPHABET}]{{{LENGTH}}})-([{ALPHABET}])$")
#: A ref made before kbflow generated refs with a check character (still addressable).
LEGACY_PATTERN = re.compile(r"^KB-[0-9]{4}-[0-9A-Z]{6,12}$")
#: The pattern ``kbflow.events.CaseRef`` accepts: the current format or a legacy ref.
MODEL_PATTERN = (rf"^KB-[0-9]{{4}}-(?:[0-9A-Z]{{6,12}}|[{ALPHABET}]{{{LENGTH}}}-[{ALPHABET}])$")

_MODULUS = len(ALPHABET)
_VALUES = {char: value for value, char in enumerate(ALPHABET)}
#: Domain separation: the derivation key is never used as is.
_DERIVATION_LABEL = b"kbflow case ref v1"
_EXAMPLE = "KB-2026-7K4M2XCH-R"


class CaseRefError(ValueError):
    """A text is not a usable case ref; the message names the rule, never the text."""


def check_character(year: int, body: str) -> str:
    """The check character of the ref ``KB-<year>-<body>-?``.

    Raises:
        CaseRefError: ``body`` is not ``LENGTH`` characters of ``ALPHABET``.
    """
    if len(body) != LENGTH or any(char not in _VALUES for char in body):
        raise CaseRefError(f"case ref: {LENGTH} characters of {ALPHABET} come after the year")
    total = year + sum(position * _VALUES[char] for position, char in enumerate(body, 1))
    # Solve total + (LENGTH + 1) * check = 0 (mod 19) for check.
    inverse = pow(LENGTH + 1, -1, _MODULUS)
    return ALPHABET[(-total * inverse) % _MODULUS]


def _compose(year: int, body: str) -> str:
    if not 1000 <= year <= 9999:
        raise CaseRefError("case ref: the year has four digits")
    return f"KB-{year}-{body}-{check_character(year, body)}"


def new_case_ref(today: dt.date | None = None) -> str:
    """A fresh random case ref for the year of ``today`` (default: today), from ``secrets``."""
    year = (today or dt.date.today()).year
    return _compose(year, "".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def derived_case_ref(key: bytes, idempotency_key: str, year: int) -> str:
    """The case ref of the start with ``idempotency_key``: HMAC-SHA256 under ``key`` (a
    kbflow secret of at least 32 bytes), so the same key gives the same ref, and nobody
    without the secret can tell the idempotency key from the ref or pick a ref through it.

    The year is the caller's (the year the case is started); the same idempotency key in
    another year gives another ref.

    Raises:
        CaseRefError: ``key`` is shorter than 32 bytes, or ``year`` is not four digits.
    """
    if len(key) < 32:
        raise CaseRefError("case ref: the derivation key needs at least 32 bytes")
    subkey = hmac.new(key, _DERIVATION_LABEL, hashlib.sha256).digest()
    number = int.from_bytes(hmac.new(subkey, idempotency_key.encode(), hashlib.sha256).digest())
    chars = []
    for _ in range(LENGTH):  # 256 bits spread over 8 of 19 characters: no visible bias
        number, value = divmod(number, _MODULUS)
        chars.append(ALPHABET[value])
    return _compose(year, "".join(chars))


def is_legacy(text: str) -> bool:
    """Whether ``text`` has the shape of a ref made before the check character."""
    return LEGACY_PATTERN.match(text) is not None


def check_case_ref(text: str, *, allow_legacy: bool = False) -> str:
    """``text`` as a case ref of the current format (upper-cased), checked character by
    character; with ``allow_legacy``, a legacy ref (no check character) is returned as is,
    for addressing a case that exists already.

    Raises:
        CaseRefError: the text has neither shape, holds a character outside ``ALPHABET``,
            or its check character does not match (a mistyped or swapped character). The
            message names the rule, never the text.
    """
    candidate = text.strip().upper()
    if allow_legacy and is_legacy(candidate):
        return candidate
    if not re.match(r"^KB-[0-9]{4}-[^-]+-[^-]$", candidate):
        legacy = (", or like KB-2026-7Q4M2XAB for a case started before refs had a check "
                  "character") if allow_legacy else ""
        raise CaseRefError(f"case ref: must look like {_EXAMPLE} (KB-, a year, -, {LENGTH} "
                           f"characters, -, a check character){legacy}")
    match = PATTERN.match(candidate)
    if match is None:
        raise CaseRefError(f"case ref: {LENGTH} characters and a check character of "
                           f"{ALPHABET} come after the year (no vowels, no look-alikes)")
    year, body, check = match.groups()
    if check_character(int(year), body) != check:
        raise CaseRefError("case ref: check character does not match; mistyped?")
    return candidate
