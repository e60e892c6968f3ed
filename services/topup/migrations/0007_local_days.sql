-- 0007: local_days, per site and closed day in the site's time zone, the visitors, sessions,
-- page views and events of that local day's visit_hours rows: exactly one bucket of the
-- dashboard's daily graph (`time:day`), built by `topup maintain` (services/topup/local_days.py);
-- and local_day_values, the day's page views and events per page and per event name, which
-- add up across days as they are (no distinct counts): the top pages and custom events cards.
--
-- Why: a bucket's visitors are distinct over its own day only, so a closed day's count never
-- changes and the graph reads one row per day instead of grouping every row of the range
-- (10M events: ~3 s). visit_days cannot serve it: its days are UTC days of sessions' beginnings,
-- a graph's are local days of events. A row is for one zone; a site that changes its zone gets
-- rows for the new one (the old ones are never read again and age out with retention).
-- Process deletes the rows of the days a delivery touches (a late delivery); maintain rebuilds.

CREATE TABLE local_days (
    site_id   uuid NOT NULL,
    zone      text NOT NULL,      -- the IANA zone the day is local to
    day       date NOT NULL,
    sessions  bigint NOT NULL,    -- distinct visit_hours.session_id of the day's rows
    visitors  bigint NOT NULL,    -- distinct visit_hours.visitor of the day's rows
    pageviews bigint NOT NULL,
    events    bigint NOT NULL,
    built_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, zone, day)
);

CREATE TABLE local_day_values (
    site_id   uuid NOT NULL,
    zone      text NOT NULL,
    day       date NOT NULL,
    dimension text NOT NULL,      -- 'event:page' or 'event:name'
    value     text,
    pageviews bigint NOT NULL,
    events    bigint NOT NULL
);
-- (site_id, day): what the reader asks for, and what a delivery deletes from.
CREATE INDEX local_day_values_site_day ON local_day_values (site_id, day);
