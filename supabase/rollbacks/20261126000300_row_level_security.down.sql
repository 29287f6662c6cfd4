-- Reverses 20261126000300_row_level_security.sql: its policies and grants go. Row level security stays
-- on (20261126000100_core_schema.sql creates every table with it), and the Supabase default grants
-- that the migration revoked from anon and authenticated are deliberately NOT restored. The tables end
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

