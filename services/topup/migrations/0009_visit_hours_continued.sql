-- 0009: visit_hours (0004) says of each row whether its session began on an earlier UTC day
-- than the row's hour (`continued`: its initial row is from the day before), which process
-- knows as it writes.
--
-- Why: a dashboard range adds up the built days' totals and reads the rows the built days do
-- not count (services/query/visit_days_sql.py): on the range's first UTC day, the sessions
-- carried over from the day before it; today, all but yesterday's carried-over ones. Telling
-- them apart took a join of every such row to `initial_events` (10M events: most of each
-- card's time); with the flag, a filter on the rows.

ALTER TABLE visit_hours ADD COLUMN continued boolean NOT NULL DEFAULT false;

UPDATE visit_hours v SET continued = true
FROM initial_events i
WHERE i.site_id = v.site_id AND i.session_id = v.session_id
  AND i.ts < date_trunc('day', v.hour, 'UTC');

-- The carried-over rows are few (the sessions going on at midnight): found by index.
CREATE INDEX visit_hours_continued ON visit_hours (site_id, hour) WHERE continued;

-- The rebuild from `events` (for data loaded around process, such as the benchmark's) sets it
-- from the sessions' initial rows as process does.
CREATE OR REPLACE FUNCTION topup_rebuild_visit_hours(
    first_day date, last_day date, only_site uuid DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first_hour timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    end_hour timestamptz := (last_day + 1)::timestamp AT TIME ZONE 'UTC';
    written bigint;
BEGIN
    PERFORM topup_create_partitions(first_day, last_day);
    DELETE FROM visit_hours WHERE hour >= first_hour AND hour < end_hour
        AND (only_site IS NULL OR site_id = only_site);
    INSERT INTO visit_hours (site_id, hour, session_id, visitor, pageviews, events, first_ts,
                             last_ts, exit_ts, exit_page, continued)
    SELECT h.*, EXISTS (
               SELECT 1 FROM initial_events i
               WHERE i.site_id = h.site_id AND i.session_id = h.session_id
                 AND i.ts < date_trunc('day', h.hour, 'UTC'))
    FROM (
        SELECT site_id, date_trunc('hour', ts, 'UTC') AS hour, session_id,
               coalesce(visitor_id, session_id), count(*) FILTER (WHERE name = 'pageview'),
               count(*), min(ts), max(ts), max(ts) FILTER (WHERE name = 'pageview'),
               (array_agg(pathname ORDER BY ts DESC, pathname DESC)
                    FILTER (WHERE name = 'pageview'))[1]
        FROM events
        WHERE ts >= first_hour AND ts < end_hour AND (only_site IS NULL OR site_id = only_site)
        GROUP BY 1, 2, 3, 4
    ) h;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;
