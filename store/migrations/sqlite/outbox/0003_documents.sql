-- Documents by reference (issue 8): each stored once, encrypted under its case's data key
-- (the ciphertext is opaque here), with readable routing fields only. Which packet
-- references which document is recorded with the packet, so that a document's readers
-- are known without decrypting anything. An erased case's documents are deleted; their
-- ids stay as tombstones (no content), so that a download can answer "gone".
CREATE TABLE documents (
    document_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL,
    uploader TEXT NOT NULL,
    uploader_oin TEXT,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE INDEX documents_by_case ON documents (case_ref);
CREATE TABLE packet_documents (
    packet_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    case_ref TEXT NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (packet_id, document_id)
);
CREATE INDEX packet_documents_by_document ON packet_documents (document_id);
CREATE INDEX packet_documents_by_case ON packet_documents (case_ref);
CREATE TABLE document_tombstones (
    document_id TEXT PRIMARY KEY,
    case_ref TEXT NOT NULL
);
