"""Who may do what through the API, from the process table and the case rules (issue 8,
point 3). Each refusal is a 403 problem naming the rule.

- start a case: only a party that may report in step 1 (``kbflow.process.reporters``),
  as itself (``reporter`` is the caller);
- send an event: only a sender its rule gives (``kbflow.case.Rule.senders``), as itself;
- read a case's status, upload to it: only a party that takes part in it (``takes_part``);
- read packets and documents: only those addressed to the caller.
"""

from __future__ import annotations

import asyncio

from api.context import ApiContext
from api.identity import Caller
from api.problems import ApiProblem, ProblemType


async def takes_part(api: ApiContext, caller: Caller, case_ref: str) -> bool:
    """Whether ``caller`` takes part in the case: it sent or received one of its packets.

    (A first rule; ``api.routes.cases`` refines it with what the API records itself.)
    """
    rows = await asyncio.to_thread(api.outbox.records.packet_rows, case_ref)
    return any(caller.party.value in (row.sender, row.recipient) for row in rows)


async def require_takes_part(api: ApiContext, caller: Caller, case_ref: str) -> None:
    """Raise a 403 problem unless ``caller`` takes part in the case."""
    if not await takes_part(api, caller, case_ref):
        raise ApiProblem(ProblemType.FORBIDDEN,
                         f"case {case_ref}: {caller.party.value} takes no part in this case "
                         "(it sent or received none of its packets)")
