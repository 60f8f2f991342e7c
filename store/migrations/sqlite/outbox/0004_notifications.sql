-- The parties' webhooks (notifications of delivered packets): one per OIN and URL.
CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id TEXT PRIMARY KEY,
    party TEXT NOT NULL,
    oin TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (oin, url)
);
CREATE INDEX IF NOT EXISTS subscriptions_by_party ON subscriptions (party, oin);
