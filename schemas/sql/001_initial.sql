-- dualwrite state, version 1 (DESIGN section 6). Applied by `ctl migrate` inside one transaction;
-- the runner itself keeps dw_schema_version. Sides are 'ce' (Dataverse) and 'fo' (Finance &
-- Operations). Event payloads are the change-event JSON documents.

-- Per map: running, paused (by an operator) or failed (paused itself; reason says why).
CREATE TABLE dw_map_state (
	map_name text PRIMARY KEY,
	state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'failed')),
	reason text,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Per map, target side and record: what was last applied there. source_version is the highest
-- source version applied (no regressions); content_hash is the hash of the mapped fields as last
-- written to or seen on the target (no echoes); etag is the target's ETag last seen (If-Match).
CREATE TABLE dw_record_state (
	map_name text NOT NULL,
	target_side text NOT NULL CHECK (target_side IN ('ce', 'fo')),
	record_key text NOT NULL,
	source_version bigint NOT NULL,
	content_hash text,
	etag text,
	target_id text,
	source_ts timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (map_name, target_side, record_key)
);

-- Idempotency keys: event ids whose outcome is recorded, pruned by applied_at once older than
-- the topic retention.
CREATE TABLE dw_applied_event (
	map_name text NOT NULL,
	target_side text NOT NULL CHECK (target_side IN ('ce', 'fo')),
	event_id text NOT NULL,
	outcome text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (map_name, target_side, event_id)
);
CREATE INDEX dw_applied_event_applied_at ON dw_applied_event (applied_at);

-- Parts of a source transaction staged until all `total` parts arrived (from any topic, by any
-- worker); then applied as one changeset. first_seen_at drives the incomplete-unit timeout.
CREATE TABLE dw_txn_part (
	source_side text NOT NULL CHECK (source_side IN ('ce', 'fo')),
	txn_id text NOT NULL,
	part_order integer NOT NULL CHECK (part_order >= 0),
	total integer NOT NULL CHECK (total > 0),
	map_name text NOT NULL,
	event_id text NOT NULL,
	event jsonb NOT NULL,
	first_seen_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (source_side, txn_id, part_order)
);
CREATE INDEX dw_txn_part_first_seen_at ON dw_txn_part (first_seen_at);

-- Events waiting for a dependency on the target (a lookup to a row not synced yet). Later events
-- for the same record queue behind the first, in id order, so per-record order holds.
CREATE TABLE dw_parked_event (
	id bigserial PRIMARY KEY,
	map_name text NOT NULL,
	target_side text NOT NULL CHECK (target_side IN ('ce', 'fo')),
	record_key text NOT NULL,
	event_id text NOT NULL,
	event jsonb NOT NULL,
	reason text NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	parked_at timestamptz NOT NULL DEFAULT now(),
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (map_name, target_side, event_id)
);
CREATE INDEX dw_parked_event_record ON dw_parked_event (map_name, target_side, record_key, id);
CREATE INDEX dw_parked_event_next_attempt ON dw_parked_event (next_attempt_at);

-- Where capture resumes per side, environment and entity: a delta link or token, a modified-time
-- watermark, or an initial-sync page link (kind says which). Advanced only after Kafka confirmed
-- delivery of everything before it.
CREATE TABLE dw_capture_checkpoint (
	side text NOT NULL CHECK (side IN ('ce', 'fo')),
	environment text NOT NULL,
	entity text NOT NULL,
	kind text NOT NULL CHECK (kind IN ('delta', 'watermark', 'initial_sync')),
	position text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (side, environment, entity, kind)
);
