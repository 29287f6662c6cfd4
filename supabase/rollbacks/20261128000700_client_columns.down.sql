-- Back to table-level INSERT for authenticated on telemetry_events (as migration 300 granted it).

revoke insert (user_id, occurred_at, app_id, event_type, file_path, duration_ms, metadata)
  on public.telemetry_events from authenticated, service_role;
revoke insert (ts, source, metric) on public.metrics_log from service_role;
grant insert on public.telemetry_events to authenticated;
