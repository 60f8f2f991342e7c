"""Where a worker's time goes: ``python -m bench.profile_summary FILE`` sums up py-spy's
collapsed stacks (``python -m bench.bench_vs_bare --profile FILE``).

Each sample is one stack of one thread that was running Python code. Two views:

- **inclusive**: the share of samples with a named part of the work anywhere on the stack
  (the payload codec, the public-payload check, pydantic, sealing, the stores' SQLite,
  logging, the workflow sandbox, ...); the shares overlap (pydantic inside the codec);
- **self**: each sample counted once, for the library or part of kbflow that its
  innermost frames belong to (``SELF``, first match from the innermost frame out).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: Inclusive probes: label, and a pattern any frame of the stack may match.
INCLUSIVE: tuple[tuple[str, str], ...] = (
    ("workflow activations (sandbox and workflow code)", r"workflow_sandbox/|_workflow_instance"),
    ("  sandbox: importing a run's workflow module", r"workflow_sandbox/_importer"),
    ("  sandbox: restricted-module proxies", r"workflow_sandbox/_restrictions"),
    ("  kbflow's workflow code", r"workflows/case_workflow\.py|kbflow/case\.py"),
    ("activities (on the event loop)", r"activities/delivery\.py"),
    ("outbox store (encryption, SQLite)", r"activities/outbox_store\.py"),
    ("sealing (PyNaCl)", r"nacl/"),
    ("payload conversion (to/from payloads)", r"converter/_payload_converter|"
                                               r"converter/_data_converter|contrib/pydantic"),
    ("payload codec (CaseCodec encode/decode)", r"encryption/codec\.py:\d+\)$|"
                                                r"\(encode|\(decode"),
    ("  public-payload check", r"is_public_payload|_public_value|_marked"),
    ("  AES-GCM", r"cryptography/"),
    ("pydantic (validation, serialization, schemas)", r"pydantic/|pydantic_core"),
    ("key store (encryption/keys.py)", r"encryption/keys\.py"),
    ("SQLite (kbflow's stores)", r"encryption/storage\.py|outbox_store\.py.*\b(connect|execute)"),
    ("logging (structlog, logging)", r"structlog/|/logging/"),
    ("operator log interceptor", r"workflows/operator_log\.py"),
    ("progress (memo, search attributes)", r"kbflow/progress\.py|upsert_memo|"
                                           r"upsert_search_attributes"),
    ("protobuf", r"google/protobuf"),
    ("asyncio event loop", r"asyncio/"),
)

#: Self categories, matched against one frame: label, pattern.
SELF: tuple[tuple[str, str], ...] = (
    ("AES-GCM (cryptography)", r"cryptography/"),
    ("sealing (PyNaCl)", r"nacl/"),
    ("pydantic", r"pydantic"),
    ("protobuf", r"google/protobuf"),
    ("logging (structlog, logging)", r"structlog/|/logging/"),
    ("kbflow stores (SQLite calls)", r"outbox_store\.py|encryption/keys\.py|"
                                     r"encryption/storage\.py|sqlite3/"),
    ("kbflow codec", r"encryption/"),
    ("kbflow workflow code", r"workflows/|kbflow/"),
    ("kbflow activities", r"activities/"),
    ("workflow sandbox", r"workflow_sandbox/"),
    ("temporalio (Python SDK)", r"temporalio/"),
    ("asyncio", r"asyncio/"),
    ("threads (to_thread, executor)", r"concurrent/|threading\.py"),
)


#: Innermost frames of a thread that waits (py-spy cannot always tell an idle thread).
IDLE = re.compile(r"^_worker \(concurrent/futures/thread\.py|\.select \(selectors\.py|"
                  r"^Condition\.wait|^Event\.wait|^Thread\._wait")


#: How many functions the inclusive listing shows.
TOP = 60


def read_samples(path: Path) -> Counter[tuple[str, ...]]:
    """Stacks (outermost frame first) and their sample counts; idle ones left out."""
    samples: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = tuple(stack.split(";"))
        if stack and count.isdigit() and not IDLE.search(frames[-1]):
            samples[frames] += int(count)
    return samples


def summarize(samples: Counter[tuple[str, ...]]) -> str:
    """Both views as text."""
    total = sum(samples.values()) or 1
    lines = [f"{total} samples", "", "inclusive (share of samples with it on the stack)"]
    for label, pattern in INCLUSIVE:
        probe = re.compile(pattern)
        hit = sum(count for stack, count in samples.items()
                  if any(probe.search(frame) for frame in stack))
        lines.append(f"  {label:<52} {100 * hit / total:5.1f} %")
    selfs: Counter[str] = Counter()
    probes = [(label, re.compile(pattern)) for label, pattern in SELF]
    for stack, count in samples.items():
        label = next((label for frame in reversed(stack) for label, probe in probes
                      if probe.search(frame)), "other")
        selfs[label] += count
    lines += ["", "self (innermost frames' library)"]
    for label, count in selfs.most_common():
        lines.append(f"  {label:<52} {100 * count / total:5.1f} %")
    inclusive: Counter[str] = Counter()
    for stack, count in samples.items():
        for frame in set(stack):
            inclusive[frame] += count
    lines += ["", f"the {TOP} functions with the most samples on the stack (inclusive)"]
    for frame, count in inclusive.most_common(TOP):
        lines.append(f"  {100 * count / total:5.1f} %  {frame[:110]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bench.profile_summary``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("file", type=Path, help="py-spy's --format raw output")
    args = parser.parse_args(argv)
    print(summarize(read_samples(args.file)))


if __name__ == "__main__":
    main()
