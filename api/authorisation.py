"""Who may do what through the API, from the process table and the case rules (issue 8,
point 3). Each refusal is a 403 problem naming the rule.

- start a case: only a party that may report in step 1 (``kbflow.process.reporters``),
  as itself (``reporter`` is the caller);
- send an event: only a sender its rule gives (``kbflow.case.Rule.senders``), as itself
  (``sender`` is the caller);
- read a case's status: only a party that takes part in it (``takes_part``);
- read and acknowledge packets: only those addressed to the caller (a GI: only those of
  cases where it is the recorded GI).

"Takes part" is what the API recorded itself (``record``: the reporter at the start,
each sender of an event the case accepted, the GI named by OIN in an OTS ruling) plus
the recipients and senders of the case's packets (the packet rows' routing fields: no
decryption). A GI counts only by its own OIN: several GIs share the party code GI, so a
packet to "GI" does not make every GI a participant.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import store
from api.context import ApiContext
from api.identity import Caller
from api.problems import ApiProblem, ProblemType
from kbflow.case import Rule
from kbflow.process import Party, reporters
from store.interface import AcknowledgementRecords, CasePartyRow


def records(api: ApiContext) -> AcknowledgementRecords:
    """The API's records in the state store the context's settings configure (the
    worker's: SQLite in the data dir, or PostgreSQL)."""
    return store.open_store(api.settings).acknowledgements


def where_of(rule: Rule) -> str:
    """Where the process describes ``rule``'s event: its step, or the weighing rules."""
    if rule.step is None:
        return "PROCESS.md §2" if rule.event.value == "weighing" else "README \"V-nummers\""
    return f"PROCESS.md §3 step {int(rule.step)}"


def _parties(parties: tuple[Party, ...]) -> str:
    names = [party.value for party in parties]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def require_reporter(caller: Caller) -> None:
    """Raise a 403 problem unless the caller's party may report in step 1."""
    if caller.party not in reporters():
        raise ApiProblem(ProblemType.FORBIDDEN,
                         f"case rule 'report': only {_parties(reporters())} report in step 1 "
                         f"(PROCESS.md §3 step 1); {caller.party.value} may not start a case")


def require_as_itself(caller: Caller, field: str, given: Party) -> None:
    """Raise a 403 problem unless ``given`` (the body's ``field``) is the caller."""
    if given is not caller.party:
        raise ApiProblem(ProblemType.FORBIDDEN,
                         f"{field}: must be the caller's own party ({caller.party.value}, "
                         "by its certificate's OIN); a party acts only as itself")


def require_sender(caller: Caller, rule: Rule) -> None:
    """Raise a 403 problem unless the caller's party is one of ``rule``'s senders."""
    if caller.party not in rule.senders:
        verb = "sends" if len(rule.senders) == 1 else "send"
        raise ApiProblem(ProblemType.FORBIDDEN,
                         f"case rule '{rule.event.value}': only {_parties(rule.senders)} "
                         f"{verb} it ({where_of(rule)})")


async def record(api: ApiContext, case_ref: str, party: Party, oin: str) -> None:
    """Record that ``party`` (by ``oin``) takes part in the case (once)."""
    now = dt.datetime.now(dt.UTC).isoformat()
    await asyncio.to_thread(records(api).record_case_party,
                            CasePartyRow(case_ref, party.value, oin, now))


async def takes_part(api: ApiContext, caller: Caller, case_ref: str) -> bool:
    """Whether ``caller`` takes part in the case (module docstring)."""
    recorded = await asyncio.to_thread(records(api).case_parties, case_ref)
    if caller.party is Party.GI:
        return any(row.party == Party.GI.value and row.oin == caller.oin for row in recorded)
    if any(row.party == caller.party.value for row in recorded):
        return True
    rows = await asyncio.to_thread(api.outbox.records.packet_rows, case_ref)
    return any(caller.party.value in (row.sender, row.recipient) for row in rows)


async def require_takes_part(api: ApiContext, caller: Caller, case_ref: str) -> None:
    """Raise a 403 problem unless ``caller`` takes part in the case."""
    if not await takes_part(api, caller, case_ref):
        raise ApiProblem(ProblemType.FORBIDDEN,
                         f"caseRef: {caller.party.value} takes no part in this case "
                         "(it reported it, sent an accepted event, was named its GI, or "
                         "received one of its packets: none of these)")
