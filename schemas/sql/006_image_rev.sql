-- dualwrite state, version 6: a revision per known image, so that the apply worker can skip the
-- field-by-field merge (docs/performance.md, third round).
-- image_rev counts the changes of image: every statement that sets image (applystate_record, the
-- only writer) raises it by one. A worker reads it with the image (applystate_decide); when every
-- entry it writes is newer than the entries of the image it read, dw_image_merge(image, upd) is
-- image || upd, and it sends the revision it read as a guard: while image_rev is still that
-- revision, the image is image || upd, else the entries are merged as before. Rows that exist get
-- revision 0.
ALTER TABLE dw_record_state ADD COLUMN image_rev bigint NOT NULL DEFAULT 0;
-- Images are rewritten for most events (~2 kB of JSON with FO's field names, over the 2 kB at which
-- PostgreSQL compresses a row): lz4 compresses and decompresses them several times faster than the
-- default pglz. A server built without lz4 (or one older than PostgreSQL 14) keeps pglz.
DO $$
BEGIN
	EXECUTE 'ALTER TABLE dw_record_state ALTER COLUMN image SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
	RAISE NOTICE 'dw_record_state.image keeps the default compression: %', SQLERRM;
END
$$;
