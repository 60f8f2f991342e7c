"""The ``kbflow`` command line: thin wiring around the worker, the case workflow, the outbox
store and the Temporal dev server. No business rule lives here (CONVENTIONS.md); the rules
are in ``kbflow.case`` and reach the user as the workflow's refusal reasons."""
