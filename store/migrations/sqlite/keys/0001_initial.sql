-- The key store's table as kbflow made it before versioned migrations (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS data_keys (
    key_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL UNIQUE,
    master_key_id TEXT,
    wrapped BLOB,
    created_at TEXT NOT NULL,
    destroyed_at TEXT
);
