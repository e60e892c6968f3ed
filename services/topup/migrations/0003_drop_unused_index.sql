-- 0003: drop events (site_id, session_id). No query reads events by session: the stats SQL
-- reads a site's events by time (site_id, ts) and groups sessions in memory, and process looks
-- sessions up in initial_events. The index only made every insert slower (measured in
-- `make bench`: process throughput against raw COPY).
DROP INDEX IF EXISTS events_site_session;
