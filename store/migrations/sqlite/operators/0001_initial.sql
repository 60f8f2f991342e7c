-- The operators' tokens as kbflow made them before versioned migrations (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS operator_tokens (
    token_sha256 TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_token_per_operator
    ON operator_tokens (operator_id) WHERE revoked_at IS NULL;
