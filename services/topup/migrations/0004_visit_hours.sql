-- 0004: visit_hours, a per-session summary for each UTC hour, kept by process in the delivery's
-- transaction from exactly the events it stored.
--
-- Why: visit metrics (visits, bounce rate, duration) group the events of every session, and
-- visitor counts are distinct counts over every event; over raw events each dashboard card scanned
-- every event of the range (`make bench`: ~9 s for the overview of 1M events). A session has ~3.5
-- events and nearly always lies within one hour, so this table has ~0.3 rows per event, and the
-- visit-level queries (aggregate, timeseries, sources, locations, devices, entry and exit pages)
-- read it instead of `events`.
-- Why per hour and not per session: a range (a day in the site's time zone) starts and ends on
-- a whole UTC hour in every zone with a whole-hour offset, so summing a session's hours inside
-- the range gives exactly what the events inside the range give, also for sessions that cross
-- the range's edge. Queries in other zones, or over event dimensions, read `events`.

CREATE TABLE visit_hours (
    site_id    uuid NOT NULL,
    hour       timestamptz NOT NULL,   -- the UTC hour of these events
    session_id bigint NOT NULL,
    visitor    bigint NOT NULL,        -- the events' visitor_id, or session_id where it is NULL
    pageviews  integer NOT NULL,
    events     integer NOT NULL,
    first_ts   timestamptz NOT NULL,   -- the session's first and last event in this hour
    last_ts    timestamptz NOT NULL,
    exit_ts    timestamptz,            -- its last page view in this hour (NULL: none)
    exit_page  text,                   -- (of two at the same instant, the greater path)
    PRIMARY KEY (site_id, hour, session_id, visitor)
) PARTITION BY RANGE (hour);

-- Partitions of all three tables are made and dropped together, by UTC day.
CREATE OR REPLACE FUNCTION topup_create_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date := first_day;
    parent text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('topup_create_partitions'));
    WHILE day <= last_day LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'initial_events', 'visit_hours'] LOOP
            IF to_regclass(format('%I', parent || '_p' || to_char(day, 'YYYYMMDD'))) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    parent || '_p' || to_char(day, 'YYYYMMDD'), parent,
                    day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END LOOP;
        day := day + 1;
    END LOOP;
    RETURN created;
END $$;

CREATE OR REPLACE FUNCTION topup_drop_partitions(keep_from date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname IN ('events', 'initial_events', 'visit_hours')
          AND c.relname ~ '_p[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END $$;

-- Recomputes visit_hours from `events` for whole UTC days: for this upgrade, and for data loaded
-- around process (the benchmark's generator), for one site or (NULL) all. Process itself adds to
-- the table as it writes.
CREATE FUNCTION topup_rebuild_visit_hours(first_day date, last_day date, only_site uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first_hour timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    end_hour timestamptz := (last_day + 1)::timestamp AT TIME ZONE 'UTC';
    written bigint;
BEGIN
    PERFORM topup_create_partitions(first_day, last_day);
    DELETE FROM visit_hours WHERE hour >= first_hour AND hour < end_hour
        AND (only_site IS NULL OR site_id = only_site);
    INSERT INTO visit_hours
    SELECT site_id, date_trunc('hour', ts, 'UTC'), session_id, coalesce(visitor_id, session_id),
           count(*) FILTER (WHERE name = 'pageview'), count(*), min(ts), max(ts),
           max(ts) FILTER (WHERE name = 'pageview'),
           (array_agg(pathname ORDER BY ts DESC, pathname DESC)
                FILTER (WHERE name = 'pageview'))[1]
    FROM events
    WHERE ts >= first_hour AND ts < end_hour AND (only_site IS NULL OR site_id = only_site)
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

SELECT topup_rebuild_visit_hours(
    (min(ts) AT TIME ZONE 'UTC')::date, (max(ts) AT TIME ZONE 'UTC')::date)
FROM events HAVING count(*) > 0;
-- Every day partition of events gets its visit_hours partition, also days with no events yet.
SELECT topup_create_partitions(
    to_date(right(min(c.relname), 8), 'YYYYMMDD'), to_date(right(max(c.relname), 8), 'YYYYMMDD'))
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = 'events' AND c.relname ~ '_p[0-9]{8}$' HAVING count(*) > 0;
ANALYZE visit_hours;
