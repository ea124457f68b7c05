-- dualwrite state, version 2: what the apply worker needs beyond version 1.
-- A delete applied to (or seen on) the target leaves the record's state row in place, so that the
-- version check keeps stopping older events, and marks it deleted: a second delete of a record
-- already deleted there is a no-op (rule 3), and a later create writes again.
ALTER TABLE dw_record_state ADD COLUMN deleted boolean NOT NULL DEFAULT false;
