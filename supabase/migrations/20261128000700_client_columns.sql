-- The pipeline's own columns of the streams are the database's: clients (and servers using the
-- service role key) may insert only the columns that carry their data, so id, created_at and
-- pipeline_txid always come from the database (an insert naming one of them is refused, and
-- `overriding system value` needs the id column). Streams are append-only logs: no API role updates
-- them. Idempotent: revokes and grants can run twice.

revoke insert, update on public.telemetry_events, public.metrics_log from anon, authenticated, service_role;

grant insert (user_id, occurred_at, app_id, event_type, file_path, duration_ms, metadata)
  on public.telemetry_events to authenticated, service_role;
grant insert (ts, source, metric) on public.metrics_log to service_role;
