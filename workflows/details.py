"""The one place kbflow's workflows set their current details (the Temporal UI's
"Current Details"): only a ``kbflow.public.PublicText``, so the
``__temporal_workflow_metadata`` query result stays plaintext and holds no personal data.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kbflow.public import PublicText


def set_details(details: PublicText) -> None:
    """Set the running workflow's current details to ``details``.

    Raises:
        TypeError: ``details`` is not a ``PublicText``.
    """
    if not isinstance(details, PublicText):
        raise TypeError("current details must be a PublicText")
    workflow.set_current_details(details)
