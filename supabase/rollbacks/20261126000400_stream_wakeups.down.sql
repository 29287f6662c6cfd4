-- Reverses 20261126000400_stream_wakeups.sql: the streams leave the supabase_realtime publication,
-- the NOTIFY triggers and their function go. The publication itself belongs to Supabase (or to the
-- compatibility bootstrap) and stays.

do $$
begin
  if exists (select 1 from pg_publication_tables
             where pubname = 'supabase_realtime' and schemaname = 'public'
               and tablename = 'telemetry_events') then
    alter publication supabase_realtime drop table public.telemetry_events;
  end if;
  if exists (select 1 from pg_publication_tables
             where pubname = 'supabase_realtime' and schemaname = 'public'
               and tablename = 'metrics_log') then
    alter publication supabase_realtime drop table public.metrics_log;
  end if;
end
$$;

drop trigger if exists metrics_log_notify on public.metrics_log;
drop trigger if exists telemetry_events_notify on public.telemetry_events;
drop function if exists floyo_pipeline.notify_stream_insert();
