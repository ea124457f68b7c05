-- Capture state beyond checkpoints (numbered 003 because the apply branch holds 002) (docs/capture.md, "Versions" and "Source transactions").

-- Per side, environment, entity and record: what capture last published for it. record_id is the
-- CE primary GUID or the FO canonical key string. record_key is the event key object last
-- published (a CE delete, which carries only the GUID, takes its full key from here). version is
-- the highest create/update version published; content_hash (FO) the SHA-256 of that image, so
-- the data-event and polling paths give the same image the same version. deleted_version is set
-- once a delete was captured (the first path to see it assigns it; the other reuses it) and
-- cleared when the record is seen alive again. source_modified (FO tables polled by a modified-time
-- field) is that field's value in the last image, so an image older than it is not given a new
-- version (a poll page read before a data event's re-read must not win over it).
CREATE TABLE dw_capture_record (
	side text NOT NULL CHECK (side IN ('ce', 'fo')),
	environment text NOT NULL,
	entity text NOT NULL,
	record_id text NOT NULL,
	record_key jsonb NOT NULL,
	version bigint NOT NULL,
	content_hash text,
	deleted_version bigint,
	source_modified text,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (side, environment, entity, record_id)
);

-- Events of a source transaction, staged durably while the transaction's other events arrive
-- (the webhook sender delivers them one at a time). Published as one unit after the settle window,
-- then deleted. seq keeps arrival order within the transaction.
CREATE TABLE dw_capture_pending (
	seq bigserial PRIMARY KEY,
	side text NOT NULL CHECK (side IN ('ce', 'fo')),
	environment text NOT NULL,
	txn_id text NOT NULL,
	event_id text NOT NULL,
	event text NOT NULL,
	received_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (side, environment, txn_id, event_id)
);
CREATE INDEX dw_capture_pending_txn ON dw_capture_pending (side, environment, txn_id, seq);
