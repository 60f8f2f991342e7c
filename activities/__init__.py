"""Activities: kbflow's I/O (delivering packets, the processing log, reminders, erasure)."""
