"""Encryption of personal data wherever it rests or travels (PROCESS.md §2 "secure sharing").

- ``keys``: master keys and one data key per case (envelope encryption, crypto-shredding).
- ``codec``: the Temporal payload codec (AES-256-GCM with the case's data key).
- ``codec_server``: the remote codec for the Temporal Web UI and CLI.
- ``sealed``: per-party key pairs; packets sealed to their recipient.
"""
