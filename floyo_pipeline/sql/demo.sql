-- Queries of `floyo-pipeline demo` (synthetic users and telemetry on the embedded database).

-- name: demo_seed_users
with users as (
  insert into auth.users (id, email)
  select u, 'demo-' || left(u::text, 8) || '@example.invalid' from unnest($1::uuid[]) as u
  returning id
), prefs as (
  insert into public.privacy_prefs (user_id, consent_given, monitoring_enabled)
  select id, true, true from users
)
insert into public.app_allowlist (user_id, app_id, enabled, scope)
select users.id, app, true, 'metadata_plus_usage' from users, unnest($2::text[]) as app

-- name: demo_insert_events
insert into public.telemetry_events (user_id, occurred_at, app_id, event_type, file_path, duration_ms)
select * from unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::int[])

-- name: demo_insert_metric
insert into public.metrics_log (ts, source, metric) values ($1, $2, $3)

-- name: demo_summary
select
  (select count(*) from public.telemetry_events where user_id = any($1::uuid[])) as events,
  (select count(*) from public.patterns where user_id = any($1::uuid[])) as patterns,
  (select count(*) from public.relationships where user_id = any($1::uuid[])) as relationships,
  (select count(*) from public.suggestions where user_id = any($1::uuid[])) as suggestions,
  (select count(*) from public.insights where user_id = any($1::uuid[]) or user_id is null) as insights
