-- Documents by reference (issue 8): each stored once, encrypted under its case's data key
-- (the ciphertext is opaque here), with readable routing fields only. Which packet
-- references which document is recorded with the packet, so that a document's readers
-- are known without decrypting anything. An erased case's documents are deleted; their
-- ids stay as tombstones (no content), so that a download can answer "gone".
CREATE TABLE documents (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    document_id text PRIMARY KEY,
    case_ref text NOT NULL,
    uploader text NOT NULL,
    uploader_oin text,
    media_type text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    created_at text NOT NULL,
    key_id text NOT NULL,
    ciphertext bytea NOT NULL
);
CREATE INDEX documents_by_case ON documents (case_ref);

CREATE TABLE packet_documents (
    packet_id text NOT NULL,
    document_id text NOT NULL,
    case_ref text NOT NULL,
    recipient text NOT NULL,
    PRIMARY KEY (packet_id, document_id)
);
CREATE INDEX packet_documents_by_document ON packet_documents (document_id);
CREATE INDEX packet_documents_by_case ON packet_documents (case_ref);

CREATE TABLE document_tombstones (
    document_id text PRIMARY KEY,
    case_ref text NOT NULL
);
