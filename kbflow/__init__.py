"""kbflow's domain: the process table, packets, events and the case state machine.

Pure code: nothing here imports Temporal or does I/O (see ../CONVENTIONS.md of the
steering repo and README.md "Layout").
"""
