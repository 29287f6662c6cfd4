-- Row level security on every public table. Users read their own rows, insert their own telemetry,
-- manage their own privacy settings and may only flip three flags on their own suggestions; anon gets
-- nothing; the pipeline's worker role reads and writes what it needs. Supabase's default privileges
-- grant everything to anon and authenticated, so each table starts from a revoke (the tables are
-- created closed already; both statements are repeated here for databases migrated before that).

alter table public.telemetry_events enable row level security;
alter table public.metrics_log enable row level security;
alter table public.privacy_prefs enable row level security;
alter table public.app_allowlist enable row level security;
alter table public.signal_toggles enable row level security;
alter table public.patterns enable row level security;
alter table public.relationships enable row level security;
alter table public.insights enable row level security;
alter table public.suggestions enable row level security;

revoke all on public.telemetry_events, public.metrics_log, public.privacy_prefs, public.app_allowlist,
  public.signal_toggles, public.patterns, public.relationships, public.insights, public.suggestions
  from anon, authenticated;

grant select, insert on public.telemetry_events to authenticated;
grant select, insert, update, delete on public.privacy_prefs, public.app_allowlist, public.signal_toggles
  to authenticated;
grant select on public.patterns, public.relationships, public.insights, public.suggestions to authenticated;
grant update (is_dismissed, is_applied, viewed_at) on public.suggestions to authenticated;

drop policy if exists telemetry_events_select_own on public.telemetry_events;
create policy telemetry_events_select_own on public.telemetry_events
  for select to authenticated using ((select auth.uid()) = user_id);
drop policy if exists telemetry_events_insert_own on public.telemetry_events;
create policy telemetry_events_insert_own on public.telemetry_events
  for insert to authenticated with check ((select auth.uid()) = user_id);

drop policy if exists privacy_prefs_own on public.privacy_prefs;
create policy privacy_prefs_own on public.privacy_prefs
  for all to authenticated using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
drop policy if exists app_allowlist_own on public.app_allowlist;
create policy app_allowlist_own on public.app_allowlist
  for all to authenticated using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
drop policy if exists signal_toggles_own on public.signal_toggles;
create policy signal_toggles_own on public.signal_toggles
  for all to authenticated using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);

drop policy if exists patterns_select_own on public.patterns;
create policy patterns_select_own on public.patterns
  for select to authenticated using ((select auth.uid()) = user_id);
drop policy if exists relationships_select_own on public.relationships;
create policy relationships_select_own on public.relationships
  for select to authenticated using ((select auth.uid()) = user_id);
drop policy if exists insights_select_own on public.insights;
create policy insights_select_own on public.insights
  for select to authenticated using ((select auth.uid()) = user_id);
drop policy if exists suggestions_select_own on public.suggestions;
create policy suggestions_select_own on public.suggestions
  for select to authenticated using ((select auth.uid()) = user_id);
drop policy if exists suggestions_update_own_flags on public.suggestions;
create policy suggestions_update_own_flags on public.suggestions
  for update to authenticated using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);

-- The pipeline's worker role: not a superuser and not BYPASSRLS, so it needs explicit policies.
drop policy if exists pipeline_worker_all on public.telemetry_events;
create policy pipeline_worker_all on public.telemetry_events
  for all to floyo_pipeline_worker using (true) with check (true);
drop policy if exists pipeline_worker_all on public.metrics_log;
create policy pipeline_worker_all on public.metrics_log
  for all to floyo_pipeline_worker using (true) with check (true);
drop policy if exists pipeline_worker_read on public.privacy_prefs;
create policy pipeline_worker_read on public.privacy_prefs
  for select to floyo_pipeline_worker using (true);
drop policy if exists pipeline_worker_read on public.app_allowlist;
create policy pipeline_worker_read on public.app_allowlist
  for select to floyo_pipeline_worker using (true);
drop policy if exists pipeline_worker_read on public.signal_toggles;
create policy pipeline_worker_read on public.signal_toggles
  for select to floyo_pipeline_worker using (true);
drop policy if exists pipeline_worker_all on public.patterns;
create policy pipeline_worker_all on public.patterns
  for all to floyo_pipeline_worker using (true) with check (true);
drop policy if exists pipeline_worker_all on public.relationships;
create policy pipeline_worker_all on public.relationships
  for all to floyo_pipeline_worker using (true) with check (true);
drop policy if exists pipeline_worker_all on public.insights;
create policy pipeline_worker_all on public.insights
  for all to floyo_pipeline_worker using (true) with check (true);
drop policy if exists pipeline_worker_all on public.suggestions;
create policy pipeline_worker_all on public.suggestions
  for all to floyo_pipeline_worker using (true) with check (true);
