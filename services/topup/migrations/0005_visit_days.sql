-- 0005: visit_days, the visit totals of the sessions that began on each closed UTC day, per
-- site, built by `topup maintain` from visit_hours (services/topup/visit_days.py).
--
-- Why: the dashboard's top stats count distinct visitors and group every session of the range;
-- over visit_hours that is ~0.3 rows per event, every time (10M events: ~8 s). Sessions and
-- visitors do not cross days far: a session's key names the day it began and its events lie in
-- that day and the next, and a daily-hashed visitor only ever appears in sessions that began on
-- its day. So the visitors, visits, page views, bounces and durations of the sessions that began
-- on day d add up across days, and a range is answered exactly by these rows for the days whose
-- sessions lie wholly inside it, plus visit_hours for the sessions of the other days.
-- Process deletes the rows of the days a delivery touches (a late delivery); maintain rebuilds.

CREATE TABLE visit_days (
    site_id   uuid NOT NULL,
    day       date NOT NULL,      -- the UTC day the sessions began
    exact     boolean NOT NULL,   -- false: a session of the day breaks what the sums rely on
    visitors  bigint NOT NULL,    -- distinct visit_hours.visitor of the day's sessions
    visits    bigint NOT NULL,
    pageviews bigint NOT NULL,
    events    bigint NOT NULL,
    bounces   bigint NOT NULL,    -- sessions with at most one page view
    duration  numeric NOT NULL,   -- seconds from each session's first to last event, summed
    built_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day)
);
