-- Reverses 20261126000300_row_level_security.sql: its policies and grants go and RLS is switched off.
-- The Supabase default grants that the migration revoked from anon and authenticated are deliberately
-- NOT restored: with RLS off they would hand every row to anyone holding the anon key. The tables end
-- up reachable only by their owner and the pipeline's worker role, the safe state to roll back into.

drop policy if exists pipeline_worker_all on public.suggestions;
drop policy if exists pipeline_worker_all on public.insights;
drop policy if exists pipeline_worker_all on public.relationships;
drop policy if exists pipeline_worker_all on public.patterns;
drop policy if exists pipeline_worker_read on public.signal_toggles;
drop policy if exists pipeline_worker_read on public.app_allowlist;
drop policy if exists pipeline_worker_read on public.privacy_prefs;
drop policy if exists pipeline_worker_all on public.metrics_log;
drop policy if exists pipeline_worker_all on public.telemetry_events;

drop policy if exists suggestions_update_own_flags on public.suggestions;
drop policy if exists suggestions_select_own on public.suggestions;
drop policy if exists insights_select_own on public.insights;
drop policy if exists relationships_select_own on public.relationships;
drop policy if exists patterns_select_own on public.patterns;
drop policy if exists signal_toggles_own on public.signal_toggles;
drop policy if exists app_allowlist_own on public.app_allowlist;
drop policy if exists privacy_prefs_own on public.privacy_prefs;
drop policy if exists telemetry_events_insert_own on public.telemetry_events;
drop policy if exists telemetry_events_select_own on public.telemetry_events;

-- Table-level REVOKE ALL also removes the column grants (update of the three suggestion flags).
revoke all on public.telemetry_events, public.metrics_log, public.privacy_prefs, public.app_allowlist,
  public.signal_toggles, public.patterns, public.relationships, public.insights, public.suggestions
  from anon, authenticated;

alter table public.suggestions disable row level security;
alter table public.insights disable row level security;
alter table public.relationships disable row level security;
alter table public.patterns disable row level security;
alter table public.signal_toggles disable row level security;
alter table public.app_allowlist disable row level security;
alter table public.privacy_prefs disable row level security;
alter table public.metrics_log disable row level security;
alter table public.telemetry_events disable row level security;
