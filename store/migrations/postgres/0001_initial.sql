-- kbflow's state on PostgreSQL: the same tables as the SQLite files, in one database.
-- ``seq`` keeps the order of insertion (SQLite's rowid). Times are ISO 8601 text, as
-- kbflow writes them, so both backends sort them alike.
CREATE TABLE packets (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    packet_id text PRIMARY KEY,
    case_ref text NOT NULL,
    step integer NOT NULL,
    sender text NOT NULL,
    recipient text NOT NULL,
    created_at text NOT NULL,
    key_id text NOT NULL,
    ciphertext bytea NOT NULL
);
CREATE INDEX packets_by_recipient ON packets (recipient, case_ref);
CREATE INDEX packets_by_case ON packets (case_ref, step);

CREATE TABLE processing_log (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    packet_id text NOT NULL,
    data_subject_id text NOT NULL,
    case_ref text NOT NULL,
    entry_json text NOT NULL,
    PRIMARY KEY (packet_id, data_subject_id)
);
CREATE INDEX log_by_subject ON processing_log (data_subject_id);
CREATE INDEX log_by_case ON processing_log (case_ref);

CREATE TABLE erasures (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    case_ref text PRIMARY KEY,
    erasure_json text NOT NULL
);

CREATE TABLE decodes (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    request_id text NOT NULL,
    scope text NOT NULL,
    case_ref text,
    entry_json text NOT NULL,
    PRIMARY KEY (request_id, scope)
);
CREATE INDEX decodes_by_case ON decodes (case_ref);

CREATE TABLE reminders (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    notice_id text PRIMARY KEY,
    case_ref text NOT NULL,
    party text NOT NULL,
    reminder_json text NOT NULL
);
CREATE INDEX reminders_by_case ON reminders (case_ref);

CREATE TABLE data_keys (
    key_id text PRIMARY KEY,
    scope text NOT NULL UNIQUE,
    master_key_id text,
    wrapped bytea,
    created_at text NOT NULL,
    destroyed_at text
);

CREATE TABLE operator_tokens (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    token_sha256 text PRIMARY KEY,
    operator_id text NOT NULL,
    issued_at text NOT NULL,
    revoked_at text
);
CREATE UNIQUE INDEX one_live_token_per_operator
    ON operator_tokens (operator_id) WHERE revoked_at IS NULL;

-- The processing log (and its record of decodes) is append-only in the database: an
-- UPDATE, DELETE or TRUNCATE is refused whoever issues it, the table's owner included.
CREATE FUNCTION kbflow_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the processing log is append-only (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER processing_log_append_only BEFORE UPDATE OR DELETE ON processing_log
    FOR EACH ROW EXECUTE FUNCTION kbflow_append_only();
CREATE TRIGGER processing_log_no_truncate BEFORE TRUNCATE ON processing_log
    FOR EACH STATEMENT EXECUTE FUNCTION kbflow_append_only();
CREATE TRIGGER decodes_append_only BEFORE UPDATE OR DELETE ON decodes
    FOR EACH ROW EXECUTE FUNCTION kbflow_append_only();
CREATE TRIGGER decodes_no_truncate BEFORE TRUNCATE ON decodes
    FOR EACH STATEMENT EXECUTE FUNCTION kbflow_append_only();
