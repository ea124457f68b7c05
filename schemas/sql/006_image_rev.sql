-- dualwrite state, version 6: a revision per known image, so that the apply worker can skip the
-- field-by-field merge (docs/performance.md, third round).
-- image_rev counts the changes of image: every statement that sets image (applystate_record, the
-- only writer) raises it by one. A worker reads it with the image (applystate_decide); when every
-- entry it writes is newer than the entries of the image it read, dw_image_merge(image, upd) is
-- image || upd, and it sends the revision it read as a guard: while image_rev is still that
-- revision, the image is image || upd, else the entries are merged as before. Rows that exist get
-- revision 0.
ALTER TABLE dw_record_state ADD COLUMN image_rev bigint NOT NULL DEFAULT 0;
