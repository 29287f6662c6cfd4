-- Wake-up hints for the pipeline: one NOTIFY per insert statement, naming the stream, and
-- membership of the Supabase Realtime publication (with SELECT for service_role, the role of the
-- key Realtime checks each change against). Hints only: the durable position is the
-- checkpoint, so a lost hint delays and never loses. No transition table: it would cost every
-- insert a copy of its rows.

create or replace function floyo_pipeline.notify_stream_insert() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform pg_notify('floyo_pipeline', tg_table_name);
  return null;
end
$$;

drop trigger if exists telemetry_events_notify on public.telemetry_events;
create trigger telemetry_events_notify
  after insert on public.telemetry_events
  for each statement execute function floyo_pipeline.notify_stream_insert();

drop trigger if exists metrics_log_notify on public.metrics_log;
create trigger metrics_log_notify
  after insert on public.metrics_log
  for each statement execute function floyo_pipeline.notify_stream_insert();

do $$
begin
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'telemetry_events') then
    alter publication supabase_realtime add table public.telemetry_events;
  end if;
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'metrics_log') then
    alter publication supabase_realtime add table public.metrics_log;
  end if;
end
$$;

-- Supabase's default privileges give service_role this already; granted here so that Realtime
-- hints do not depend on them.
grant select on public.telemetry_events, public.metrics_log to service_role;
