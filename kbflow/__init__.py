"""kbflow's domain: the process table, packets, events and the case state machine.

Mostly pure code, importing nothing from Temporal and doing no I/O; the exceptions are
``scenario`` (reads scenario files), ``logs`` (configures the process's logging) and
``settings`` (reads the environment). README.md "Layout" lists which module is which, and
tests/test_settings.py checks it.
"""
