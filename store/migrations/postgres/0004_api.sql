-- The agencies' API (issue 8, part A): who takes part in a case as the API recorded it
-- (the reporter at the start, each sender of an accepted event, the GI named in an OTS
-- ruling), and each packet's acknowledgement of receipt (once: the first one counts).
-- Parties and OINs only: no personal data. An inbox pages by packets.seq.
CREATE TABLE case_parties (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    case_ref text NOT NULL,
    party text NOT NULL,
    oin text NOT NULL,
    recorded_at text NOT NULL,
    PRIMARY KEY (case_ref, party, oin)
);
CREATE TABLE acknowledgements (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    packet_id text PRIMARY KEY,
    recipient text NOT NULL,
    oin text NOT NULL,
    acknowledged_at text NOT NULL
);
CREATE INDEX packets_by_recipient_seq ON packets (recipient, seq);
