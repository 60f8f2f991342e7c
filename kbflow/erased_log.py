"""One quiet operator line instead of the SDK's tracebacks when a worker is asked to
replay an erased case.

A query on a completed run (``temporal workflow query --name status`` on an erased case,
say) makes the worker replay the run's history, and its payloads need the case's data
key, which erasure destroyed. The SDK then logs, for that one query, two ERROR lines with
tracebacks (``temporalio.worker._workflow``: "Failed handling activation" with
``KeyUnavailable``, then the same with "Missing initialize workflow" for the query job
that follows) and the SDK core three WARNING lines (``temporalio.core``: "Failing legacy
query request" twice, then "Query not found when attempting to respond to it" for the
second answer). Nothing is wrong and nothing can be done: the case is erased on purpose.

``ErasedHistoryLog`` (a ``logging.Filter`` on those two loggers, installed by
``install``) turns the first line into one WARNING that names the case ref and the run,
``case KB-…: erased: its history can no longer be decoded (run …); ask kbflow status``,
without a traceback, and drops the four lines that only follow from it: those naming a run
it reported, and as many "Query not found" lines as it dropped second answers (each within
``_STRAY_WITHIN`` seconds of it). Any other line passes unchanged. The case ref comes from
the destroyed key's scope in the worker's key store (``KeyStore.scope_of``); the key id is
read from the ``KeyUnavailable`` message, which names it (kbflow makes key ids: no
personal data).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict, deque

from encryption.keys import KeyStore, KeyUnavailable
from kbflow.logs import CORE_LOGGER
from kbflow.settings import case_ref_of

#: The SDK's logger of workflow activations.
SDK_WORKFLOW_LOGGER = "temporalio.worker._workflow"
#: What the SDK logs when an activation fails (``%s``: the run id).
_FAILED_ACTIVATION = "Failed handling activation on workflow with run ID %s"
_MISSING_INIT = "Missing initialize workflow"
_FAILED_QUERY = "Failing legacy query request"
_QUERY_NOT_FOUND = "Query not found when attempting to respond to it"
_DESTROYED_KEY = re.compile(r"data key (dk-[0-9a-f]+): destroyed")
#: How many erased runs are remembered (the lines that follow one come within a second).
_REMEMBERED = 256
#: A dropped second answer explains a "Query not found" line this many seconds later at
#: most (the core logs it within a second), so it never hides an unrelated one for long.
_STRAY_WITHIN = 30.0
#: The line that replaces the traceback; it holds ids only.
MESSAGE = "case %s: erased: its history can no longer be decoded (run %s); ask kbflow status"


class ErasedHistoryLog(logging.Filter):
    """See the module docstring. Thread-safe: the SDK logs from its worker threads and
    the core's lines arrive from its forwarding thread."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._keys: list[KeyStore] = []
        self._erased_runs: OrderedDict[str, None] = OrderedDict()
        #: When each second answer that the core will report as "not found" was dropped.
        self._stray_answers: deque[float] = deque(maxlen=_REMEMBERED)

    def add_keys(self, keys: KeyStore) -> None:
        """Look case refs up in ``keys`` too (each worker's key store; a process may run
        several workers, the tests do)."""
        with self._lock:
            if all(known is not keys for known in self._keys):
                self._keys = [keys, *self._keys][:8]

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite (and pass) the first line of an erased run, drop those that follow
        from it, pass every other line as it is."""
        try:
            if record.name == SDK_WORKFLOW_LOGGER:
                return self._sdk_line(record)
            if record.name == CORE_LOGGER:
                return self._core_line(record)
        except Exception:  # a log filter must never lose a line by failing
            return True
        return True

    def _sdk_line(self, record: logging.LogRecord) -> bool:
        if record.msg != _FAILED_ACTIVATION or not record.exc_info or not record.args:
            return True
        error, run_id = record.exc_info[1], str(_first(record.args))
        if isinstance(error, KeyUnavailable) and (found := _DESTROYED_KEY.search(str(error))):
            with self._lock:
                self._erased_runs[run_id] = None
                while len(self._erased_runs) > _REMEMBERED:
                    self._erased_runs.popitem(last=False)
            _rewrite(record, self._case_of(found.group(1)), run_id)
            return True
        if isinstance(error, RuntimeError) and _MISSING_INIT in str(error):
            with self._lock:
                if run_id in self._erased_runs:
                    # the core answers the query a second time: "Query not found"
                    self._stray_answers.append(time.monotonic())
                    return False
        return True

    def _core_line(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == _FAILED_QUERY:
            entry = getattr(record, "temporal_log", None)
            run_id = str(dict(entry.fields).get("run_id", "")) if entry is not None else ""
            with self._lock:
                return run_id not in self._erased_runs
        if message == _QUERY_NOT_FOUND:
            with self._lock:
                now = time.monotonic()
                while self._stray_answers and now - self._stray_answers[0] > _STRAY_WITHIN:
                    self._stray_answers.popleft()  # explains no line any more
                if self._stray_answers:
                    self._stray_answers.popleft()
                    return False
        return True

    def _case_of(self, key_id: str) -> str:
        with self._lock:
            stores = list(self._keys)
        for keys in stores:
            try:
                scope = keys.scope_of(key_id)
            except Exception:  # an unreadable key store names no case: say so
                continue
            if scope is not None:
                return case_ref_of(scope) or scope
        return "of key " + key_id


def _first(args: object) -> object:
    return args[0] if isinstance(args, tuple) and args else args


def _rewrite(record: logging.LogRecord, case: str, run_id: str) -> None:
    """Make ``record`` the one WARNING line, without its traceback."""
    record.msg, record.args = MESSAGE, (case, run_id)
    record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
    record.exc_info, record.exc_text, record.stack_info = None, None, None


_INSTALLED = ErasedHistoryLog()


def install(keys: KeyStore) -> ErasedHistoryLog:
    """Put the one ``ErasedHistoryLog`` on the SDK's workflow logger and the core's
    logger (once per process), looking case refs up in ``keys`` too; returns it."""
    _INSTALLED.add_keys(keys)
    for name in (SDK_WORKFLOW_LOGGER, CORE_LOGGER):
        logger = logging.getLogger(name)
        if _INSTALLED not in logger.filters:
            logger.addFilter(_INSTALLED)
    return _INSTALLED
