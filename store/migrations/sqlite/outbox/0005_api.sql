-- The agencies' API (issue 8, part A): who takes part in a case as the API recorded it
-- (the reporter at the start, each sender of an accepted event, the GI named in an OTS
-- ruling), and each packet's acknowledgement of receipt (once: the first one counts).
-- Parties and OINs only: no personal data.
CREATE TABLE IF NOT EXISTS case_parties (
    case_ref TEXT NOT NULL,
    party TEXT NOT NULL,
    oin TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (case_ref, party, oin)
);
CREATE TABLE IF NOT EXISTS acknowledgements (
    packet_id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    oin TEXT NOT NULL,
    acknowledged_at TEXT NOT NULL
);
