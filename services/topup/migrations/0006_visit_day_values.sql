-- 0006: visit_day_values, beside visit_days (0005): for each exact closed day, the visitors and
-- visits of the day's sessions per value of each visit attribute (channel, country, device,
-- entry page, …), which add up across days for the same reason the day's totals do. The
-- dashboard's cards (visitors by channel, country, device, …) read them for the range's closed
-- days and visit_hours for the rest (services/query/visit_days_sql.py). Built and deleted with
-- the day's visit_days row.

CREATE TABLE visit_day_values (
    site_id   uuid NOT NULL,
    day       date NOT NULL,
    dimension text NOT NULL,      -- the Stats API's name, e.g. 'visit:channel'
    value     text,               -- NULL: the sessions without the attribute
    visitors  bigint NOT NULL,
    visits    bigint NOT NULL
);
CREATE INDEX visit_day_values_site_day ON visit_day_values (site_id, dimension, day);
