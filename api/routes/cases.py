"""``/v1/cases``: start a case (step 1), send it an event, read its status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.context import ContextDep
from api.identity import CallerDep
from api.problems import ApiProblem, ProblemType, responses
from kbflow.case import CaseStatus
from kbflow.case_refs import MODEL_PATTERN
from starter.cases import CaseError, case_status

router = APIRouter(tags=["cases"])

CaseRefPath = Annotated[str, Path(alias="caseRef", pattern=MODEL_PATTERN,
                                  description="The case reference kbflow made, e.g. "
                                              "KB-2026-7K4M2XCH-R")]


@router.get("/cases/{caseRef}", response_model=CaseStatus,
            responses=responses(ProblemType.NOT_FOUND, ProblemType.UNAVAILABLE))
async def read_case(case_ref: CaseRefPath, caller: CallerDep, api: ContextDep) -> CaseStatus:
    """The case at a glance (no personal data): phase, steps done, what is awaited."""
    try:
        return await case_status(api.client, case_ref)
    except CaseError as error:
        raise ApiProblem(ProblemType.NOT_FOUND, str(error)) from None
