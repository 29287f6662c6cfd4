-- Queries of `floyo-pipeline demo` (synthetic users and telemetry, and what the view shows).

-- name: demo_seed_users
with users as (
  insert into auth.users (id, email)
  select id, email from unnest($1::uuid[], $2::text[]) as u(id, email)
  returning id
), prefs as (
  insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)
  select id, true, true from users
)
insert into public.app_allowlist (user_id, app_id, enabled, scope)
select users.id, app, true, 'metadata_plus_usage' from users, unnest($3::text[]) as app

-- name: demo_insert_events
insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path, duration_ms)
select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int[])

-- name: demo_insert_metric
insert into public.metrics_log (ts, source, metric) values ($1, $2, $3)

-- name: demo_last_insight_id
-- Insights up to this id existed before the run (global ones from an earlier demo are not this run's).
select coalesce(max(id), 0) from public.insights

-- name: demo_new_suggestions
select id, user_id, suggested_integration, reasoning, confidence
from public.suggestions
where user_id = any($1::uuid[]) and id > $2
order by id

-- name: demo_new_insights
select id, user_id, kind, severity, title, body
from public.insights
where id > $2 and (user_id = any($1::uuid[]) or user_id is null)
order by id

-- name: demo_counts
select
  (select count(*) from public.telemetry_events where user_id = any($1::uuid[])) as events,
  (select count(*) from public.patterns where user_id = any($1::uuid[])) as patterns,
  (select count(*) from public.relationships where user_id = any($1::uuid[])) as relationships,
  (select count(*) from public.suggestions where user_id = any($1::uuid[])) as suggestions,
  (select count(*) from public.insights where user_id = any($1::uuid[])) as user_insights,
  (select count(*) from public.insights where user_id is null and id > $2) as global_insights
