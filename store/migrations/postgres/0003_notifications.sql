-- The parties' webhooks (notifications of delivered packets): one per OIN and URL.
CREATE TABLE subscriptions (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    subscription_id text PRIMARY KEY,
    party text NOT NULL,
    oin text NOT NULL,
    url text NOT NULL,
    created_at text NOT NULL,
    UNIQUE (oin, url)
);
CREATE INDEX subscriptions_by_party ON subscriptions (party, oin);
