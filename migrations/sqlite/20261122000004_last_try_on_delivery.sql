-- A delivery's last try is kept on its row, beside last_error and last_http_status. A try that
-- settles a delivery as succeeded is then not written to the attempt log as well: the log keeps
-- the failed tries (and any whose settlement did not take), and reads add the successful one from
-- the row.
ALTER TABLE deliveries ADD COLUMN last_started_at TEXT;
ALTER TABLE deliveries ADD COLUMN last_duration_ms REAL;
-- At most 4 KiB of what the target answered.
ALTER TABLE deliveries ADD COLUMN last_response_body TEXT;
