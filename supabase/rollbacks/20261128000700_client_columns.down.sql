-- Back to table-level INSERT for authenticated on telemetry_events (as migration 300 granted it), and
-- service_role's INSERT and UPDATE on the streams (what Supabase's default privileges give it).

revoke insert (user_id, occurred_at, app_id, event_type, file_path, duration_ms, metadata)
  on public.telemetry_events from authenticated, service_role;
revoke insert (ts, source, metric) on public.metrics_log from service_role;
grant insert on public.telemetry_events to authenticated;
grant insert, update on public.telemetry_events, public.metrics_log to service_role;
