-- The nightly privacy cleanup (floyo_pipeline.retention): what each user's data_retention_days no
-- longer allows, measured against the wall clock. $1 = the retention for users without privacy_prefs.
-- Global insights (no user) get that default too.

-- name: retention_try_lock
select pg_try_advisory_xact_lock($1)

-- name: retention_count_telemetry_events
select count(*) from public.telemetry_events t
where t.occurred_at < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_telemetry_events
with gone as (
  delete from public.telemetry_events t
  where t.occurred_at < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- name: retention_count_patterns
select count(*) from public.patterns t
where t.last_used < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_patterns
with gone as (
  delete from public.patterns t
  where t.last_used < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- name: retention_count_relationships
select count(*) from public.relationships t
where t.last_seen < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_relationships
with gone as (
  delete from public.relationships t
  where t.last_seen < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- name: retention_count_insights
select count(*) from public.insights t
where t.last_seen < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_insights
with gone as (
  delete from public.insights t
  where t.last_seen < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- The analyzers' per-user state holds paths and app names too: it goes with the same clock.

-- name: retention_count_file_pattern_state
select count(*) from floyo_pipeline.file_pattern_state t
where t.last_at < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_file_pattern_state
with gone as (
  delete from floyo_pipeline.file_pattern_state t
  where t.last_at < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- name: retention_count_app_workflow_state
select count(*) from floyo_pipeline.app_workflow_state t
where t.last_at < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_app_workflow_state
with gone as (
  delete from floyo_pipeline.app_workflow_state t
  where t.last_at < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone

-- name: retention_count_duration_windows
select count(*) from floyo_pipeline.duration_windows t
where t.last_at < now() - make_interval(days => coalesce(
  (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))

-- name: retention_delete_duration_windows
with gone as (
  delete from floyo_pipeline.duration_windows t
  where t.last_at < now() - make_interval(days => coalesce(
    (select p.data_retention_days from public.privacy_prefs p where p.user_id = t.user_id), $1))
  returning 1)
select count(*) from gone
