"""Development secrets kept in files in the data dir (production passes them in the
environment). A file is created with mode 0600, atomically: a reader never sees it half
written, and of two processes creating it at once, one wins and both read its content."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """The content of the secret file ``path`` (stripped), made with ``make()`` if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as draft_file:
                draft_file.write(make())
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(draft, path)
        finally:
            os.unlink(draft)
    return path.read_text().strip()


def append_secret_line(path: Path, line: str) -> None:
    """Append ``line`` to the secret file ``path`` (created with mode 0600 if missing)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a") as secret_file:
        secret_file.write(line + "\n")
