-- Supabase fidelity: what the earlier migrations now do where each object is created, for databases
-- migrated before, plus live insights for the app. Idempotent.
--
-- 1. Every public table closed even where 20261126000300 never ran: row level security on, and the
--    identity sequences' Supabase default grants (ALL, which lets a caller reset a sequence) revoked
--    from anon and authenticated. Inserts through an identity column need no sequence privilege.
-- 2. Supabase's advisor: a fixed search_path on the pipeline's functions, an index under the foreign
--    key floyo_pipeline.checkpoints -> streams.
-- 3. service_role, the role of the key Realtime checks stream changes against, reads the streams by
--    an explicit grant rather than through Supabase's default privileges only.
-- 4. Insights and suggestions join the supabase_realtime publication: the app subscribes with its
--    user's JWT and Realtime's row level security check sends each user only their own rows.

alter table public.telemetry_events enable row level security;
alter table public.metrics_log enable row level security;
alter table public.privacy_prefs enable row level security;
alter table public.app_allowlist enable row level security;
alter table public.signal_toggles enable row level security;
alter table public.patterns enable row level security;
alter table public.relationships enable row level security;
alter table public.insights enable row level security;
alter table public.suggestions enable row level security;

revoke all on sequence public.telemetry_events_id_seq, public.metrics_log_id_seq, public.patterns_id_seq,
  public.relationships_id_seq, public.insights_id_seq, public.suggestions_id_seq
  from anon, authenticated;

alter function floyo_pipeline.user_partition(uuid) set search_path = '';
alter function floyo_pipeline.notify_stream_insert() set search_path = '';

create index if not exists checkpoints_stream_idx on floyo_pipeline.checkpoints (stream);

grant select on public.telemetry_events, public.metrics_log to service_role;

do $$
begin
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'insights') then
    alter publication supabase_realtime add table public.insights;
  end if;
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and schemaname = 'public'
                   and tablename = 'suggestions') then
    alter publication supabase_realtime add table public.suggestions;
  end if;
end
$$;
