-- dualwrite state, version 5: capture no longer stages source-transaction events in PostgreSQL
-- (migration 3's dw_capture_pending); they are staged on the Kafka topic
-- <prefix>.capture-staging.<side> (docs/capture.md, "Source transactions"). A table that still
-- holds events was left by an older capture that stopped with a transaction open: dropping it would
-- lose those changes, so the migration stops and says what to do.
DO $$
DECLARE
	n bigint;
BEGIN
	SELECT count(*) INTO n FROM dw_capture_pending;
	IF n > 0 THEN
		RAISE EXCEPTION 'dw_capture_pending holds % event(s) staged by an older capture that has not published them', n
			USING HINT = 'Start that older capture version once more so it publishes them (or run '
				     '`ctl initial-sync` for the tables concerned), then run the migration again.';
	END IF;
END
$$;

DROP TABLE dw_capture_pending;
