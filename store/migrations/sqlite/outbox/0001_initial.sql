-- The outbox store's tables as kbflow made them before versioned migrations: a data dir
-- from then opens unchanged (every statement is IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS packets (
    packet_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    step INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS packets_by_recipient ON packets (recipient, case_ref);
CREATE INDEX IF NOT EXISTS packets_by_case ON packets (case_ref, step);
CREATE TABLE IF NOT EXISTS processing_log (
    packet_id TEXT NOT NULL,
    data_subject_id TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    entry_json TEXT NOT NULL,
    PRIMARY KEY (packet_id, data_subject_id)
);
CREATE INDEX IF NOT EXISTS log_by_subject ON processing_log (data_subject_id);
CREATE TABLE IF NOT EXISTS erasures (
    case_ref TEXT PRIMARY KEY,
    erasure_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decodes (
    request_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    case_ref TEXT,
    entry_json TEXT NOT NULL,
    PRIMARY KEY (request_id, scope)
);
CREATE INDEX IF NOT EXISTS decodes_by_case ON decodes (case_ref);
CREATE TABLE IF NOT EXISTS reminders (
    notice_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    party TEXT NOT NULL,
    reminder_json TEXT NOT NULL
);
