"""The search attributes of a case: its progress, never its personal data.

``CaseWorkflow`` upserts them on every change; ``kbflow cases`` and ``kbflow worklist``
query them from Temporal's visibility (no worker needed), and so does the Web UI's list
filter. Every name carries the ``Kbflow`` prefix, so none collides with a built-in (the
UI has its own ``ExecutionStatus``). Values are enums, step numbers, party codes, flags
and datetimes only.

The namespace must have them registered before a worker upserts them: ``kbflow server``
and the demo pass ``dev_server_args()`` to the dev server, the test fixtures register
them, and ``docker-compose.yml``'s namespace job creates them in production.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

#: The case's ``kbflow.case.Phase``.
PHASE = SearchAttributeKey.for_keyword("KbflowPhase")
#: The highest step (PROCESS.md §3) done so far.
LAST_STEP = SearchAttributeKey.for_int("KbflowLastStep")
#: The party codes (``kbflow.process.Party``) the case awaits an event from.
AWAITING = SearchAttributeKey.for_keyword_list("KbflowAwaiting")
#: The earliest reply deadline of what is awaited (unset when nothing is due).
NEXT_DEADLINE = SearchAttributeKey.for_datetime("KbflowNextDeadline")
#: Whether any awaited reply is past its deadline.
OVERDUE = SearchAttributeKey.for_bool("KbflowOverdue")
#: The measure the court ordered (``kbflow.items.Measure``), once ruled.
MEASURE = SearchAttributeKey.for_keyword("KbflowMeasure")
#: How the case ended (``kbflow.case.EndState``), once closed.
END_STATE = SearchAttributeKey.for_keyword("KbflowEndState")

ALL: tuple[SearchAttributeKey, ...] = (
    PHASE, LAST_STEP, AWAITING, NEXT_DEADLINE, OVERDUE, MEASURE, END_STATE)

#: The dev server's ``--search-attribute NAME=TYPE`` type names, by indexed value type.
_DEV_SERVER_TYPE = {
    "KEYWORD": "Keyword", "INT": "Int", "KEYWORD_LIST": "KeywordList",
    "DATETIME": "Datetime", "BOOL": "Bool", "TEXT": "Text", "FLOAT": "Double",
}


def dev_server_args() -> list[str]:
    """The dev server's arguments registering every kbflow search attribute."""
    args: list[str] = []
    for key in ALL:
        kind = _DEV_SERVER_TYPE[key.indexed_value_type.name]
        args += ["--search-attribute", f"{key.name}={kind}"]
    return args


async def register(client: Client) -> None:
    """Register every kbflow search attribute in the client's namespace through the
    operator service: for a server started without ``dev_server_args`` (the time-skipping
    test server knows none, and a workflow task that upserts an unknown one fails)."""
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={key.name: IndexedValueType.ValueType(key.indexed_value_type)
                           for key in ALL}))
