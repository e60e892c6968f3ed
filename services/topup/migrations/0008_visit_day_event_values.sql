-- 0008: visit_day_values (0006) also hold, per value, the page views and events of the day's
-- sessions, and two event dimensions beside the visit attributes: 'event:page' and
-- 'event:name', the visitors, visits, page views and events of the day's sessions per page
-- (per event name) they had an event on. They add up across days as the attributes' do: the
-- sessions of a built day lie wholly in any range holding its two days, and a daily-hashed
-- visitor belongs to one day's sessions only.
--
-- Why: Plausible's top pages card counts visitors per page, a distinct count over every event
-- of the range (10M events: ~9 s); with these rows it reads the closed days' values plus the
-- events of the rest (services/query/visit_days_sql.py).
--
-- The days built before this migration lack the new rows and columns: they are deleted here,
-- and the next `topup maintain` builds them again (until then the ordinary path answers).

DELETE FROM visit_day_values;
DELETE FROM visit_days;

ALTER TABLE visit_day_values
    ADD COLUMN pageviews bigint NOT NULL,
    ADD COLUMN events    bigint NOT NULL;
