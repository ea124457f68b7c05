-- dualwrite state, version 4: field-level images for echo settling and conflict merges (DESIGN 5
-- rules 3 and 4; docs/conflicts.md).
-- image is what the apply workers know of the record on that side, per mapped field in that side's
-- image names (CE lookups by their _<name>_value attribute): {"<field>": {"v": <value>, "t": <ms>}}.
-- t is a time on that side's own timeline (its change's source time, or when our write was sent),
-- n (when known) the side's own record version after the change (CE versionnumber), o the side
-- whose change the value is. Entries are merged field by field, the newer winning (by n when both
-- have one, else by t; ties: the update), so the two workers of a map (one per direction) can update one row concurrently in any
-- order and end with the same image.
ALTER TABLE dw_record_state ADD COLUMN image jsonb;

CREATE FUNCTION dw_image_merge(base jsonb, upd jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN upd IS NULL THEN base WHEN base IS NULL THEN upd ELSE
		base || COALESCE((SELECT jsonb_object_agg(u.key, u.value) FROM jsonb_each(upd) AS u
			WHERE NOT (base ? u.key)
			   OR CASE WHEN (u.value ? 'n') AND (base -> u.key ? 'n')
				THEN (u.value ->> 'n')::bigint >= (base -> u.key ->> 'n')::bigint
				ELSE COALESCE((u.value ->> 't')::bigint, 0) >= COALESCE((base -> u.key ->> 't')::bigint, 0) END),
			'{}'::jsonb)
	END
$$;
