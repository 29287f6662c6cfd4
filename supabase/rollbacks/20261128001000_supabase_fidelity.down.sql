-- Reverses 20261128001000_supabase_fidelity.sql: insights and suggestions leave the supabase_realtime
-- publication (the app then sees new ones only when it asks). The rest stays on purpose: the earlier
-- migrations now create the same row level security, revokes, search_path, index and service_role
-- grant themselves, so undoing them here would leave a database that no migration history produces
-- (and reopen sequences to anon).

do $$
begin
  if exists (select 1 from pg_publication_tables
             where pubname = 'supabase_realtime' and schemaname = 'public'
               and tablename = 'suggestions') then
    alter publication supabase_realtime drop table public.suggestions;
  end if;
  if exists (select 1 from pg_publication_tables
             where pubname = 'supabase_realtime' and schemaname = 'public'
               and tablename = 'insights') then
    alter publication supabase_realtime drop table public.insights;
  end if;
end
$$;
