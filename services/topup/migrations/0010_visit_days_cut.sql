-- 0010: visit_days (0005) also holds each day's totals cut at its midnight: the page views,
-- events, bounces and duration of the sessions begun that day over their rows of that day
-- alone (their visitors and visits are the day's own either way: a session's first row lies on
-- the day it began). NULL until `topup maintain` builds the day again.
--
-- Why: a range that ends at the end of a closed day d leaves d's sessions to the session
-- summaries, since their events after midnight lie outside it: the top stats' previous period
-- always ends so, and at 10M events that day cost most of the top stats' time. These totals
-- answer it (services/query/visit_days_sql.py).

ALTER TABLE visit_days
    ADD COLUMN cut_pageviews bigint,
    ADD COLUMN cut_events    bigint,
    ADD COLUMN cut_bounces   bigint,
    ADD COLUMN cut_duration  numeric;
