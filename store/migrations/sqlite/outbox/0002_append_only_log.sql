-- The processing log (and its record of decodes) is append-only in the file too: an
-- UPDATE or DELETE of a line is refused by SQLite, whoever issues it.
CREATE TRIGGER IF NOT EXISTS processing_log_no_update BEFORE UPDATE ON processing_log
BEGIN SELECT RAISE(ABORT, 'the processing log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS processing_log_no_delete BEFORE DELETE ON processing_log
BEGIN SELECT RAISE(ABORT, 'the processing log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decodes_no_update BEFORE UPDATE ON decodes
BEGIN SELECT RAISE(ABORT, 'the processing log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decodes_no_delete BEFORE DELETE ON decodes
BEGIN SELECT RAISE(ABORT, 'the processing log is append-only'); END;
