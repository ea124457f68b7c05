-- dualwrite state, version 2: what the apply worker needs beyond version 1.
-- A delete applied to (or seen on) the target leaves the record's state row in place, so that the
-- version check keeps stopping older events, and marks it deleted: a second delete of a record
-- already deleted there is a no-op (rule 3), and a later create writes again.
ALTER TABLE dw_record_state ADD COLUMN deleted boolean NOT NULL DEFAULT false;
-- Two hashes per record (rule 3): content_hash is the hash of the mapped payload as last written
-- (a new write with the same hash is a no-op; cleared when the side changed it since), and
-- seen_hash is the hash of the record's image as that side holds it, from the write's response
-- or from a change event of that side. A change event from that side whose image hash equals
-- seen_hash is the echo of what is already known there.
ALTER TABLE dw_record_state ADD COLUMN seen_hash text;
