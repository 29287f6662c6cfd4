-- Every query the analyzers run, by name. Loaded by consumers.sql with floyo_pipeline.api.load_queries.
-- Each batch reads its state in one query and writes each table in one set-based statement.

-- name: privacy_settings
-- The gate's answers for one batch, from the pipeline's copy of the settings (which no user can lock):
-- per user in $1, whether it is monitored, which of the apps asked for it ($2, $3: user, app pairs)
-- are allowed, and which of the event types asked ($4, $5) are switched off. Only the batch's own
-- keys are looked up, so what comes back is bounded by the batch, not by the user's settings.
with allowed as (
  select q.user_id, array_agg(q.app_id) as apps
  from (select distinct * from unnest($2::uuid[], $3::text[]) as q(user_id, app_id)) q
  join floyo_pipeline.user_apps a on a.user_id = q.user_id and a.app_id = q.app_id
  group by q.user_id
), switched_off as (
  select q.user_id, array_agg(q.signal_key) as signals_off
  from (select distinct * from unnest($4::uuid[], $5::text[]) as q(user_id, signal_key)) q
  join floyo_pipeline.user_signals_off t on t.user_id = q.user_id and t.signal_key = q.signal_key
  group by q.user_id
)
select u.user_id,
       coalesce(s.monitored, false) as monitored,
       coalesce(a.apps, '{}'::text[]) as apps,
       coalesce(o.signals_off, '{}'::text[]) as signals_off
from unnest($1::uuid[]) as u(user_id)
left join floyo_pipeline.user_settings s on s.user_id = u.user_id
left join allowed a on a.user_id = u.user_id
left join switched_off o on o.user_id = u.user_id

-- name: file_state_load
-- The previous file event and recent paths per user, and the current pattern counts of the
-- catalog extensions ($2).
select u.user_id, s.last_path, s.last_at, s.recent_paths,
       c.extensions, c.counts
from unnest($1::uuid[]) as u(user_id)
left join floyo_pipeline.file_pattern_state s on s.user_id = u.user_id
left join lateral (
  select array_agg(p.file_extension) as extensions, array_agg(p.count) as counts
  from public.patterns p
  where p.user_id = u.user_id and p.file_extension = any($2::text[])
) c on true

-- name: file_state_save
insert into floyo_pipeline.file_pattern_state as s (user_id, last_path, last_at, recent_paths)
select x.user_id, x.last_path, x.last_at, x.recent_paths
from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::jsonb[])
  as x(user_id, last_path, last_at, recent_paths)
on conflict (user_id) do update
set last_path = excluded.last_path, last_at = excluded.last_at, recent_paths = excluded.recent_paths

-- name: patterns_add
-- Tools arrive joined with the unit separator (one text per row keeps the arrays one-dimensional).
insert into public.patterns as p (user_id, file_extension, count, last_used, tools)
select x.user_id, x.extension, x.uses, x.last_used, string_to_array(x.tools, chr(31))
from unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::text[])
  as x(user_id, extension, uses, last_used, tools)
on conflict (user_id, file_extension) do update
set count = p.count + excluded.count,
    last_used = greatest(p.last_used, excluded.last_used),
    tools = case when excluded.tools <@ p.tools then p.tools
                 else array(select distinct t from unnest(p.tools || excluded.tools) as t order by t) end

-- name: relationships_add
insert into public.relationships as r (user_id, source, target, relation_type, weight, last_seen)
select x.user_id, x.source, x.target, $6, x.weight, x.last_seen
from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::timestamptz[])
  as x(user_id, source, target, weight, last_seen)
on conflict (user_id, source, target, relation_type) do update
set weight = r.weight + excluded.weight, last_seen = greatest(r.last_seen, excluded.last_seen)

-- name: suggestions_upsert
-- A dismissed suggestion is never reopened nor changed; created_at stays the first trigger's time;
-- withdrawn_at follows the latest evaluation (null while the suggestion stands).
insert into public.suggestions as s
  (user_id, suggestion_key, trigger, tools_involved, suggested_integration, sample_code, reasoning,
   actual_files, confidence, created_at, withdrawn_at)
select x.user_id, x.suggestion_key, x.trigger, x.tools_involved, x.suggested_integration,
       x.sample_code, x.reasoning, x.actual_files, x.confidence, x.created_at, x.withdrawn_at
from jsonb_to_recordset($1::jsonb) as x(
  user_id uuid, suggestion_key text, trigger text, tools_involved text[], suggested_integration text,
  sample_code text, reasoning text, actual_files text[], confidence double precision,
  created_at timestamptz, withdrawn_at timestamptz)
on conflict (user_id, suggestion_key) do update
set trigger = excluded.trigger,
    tools_involved = excluded.tools_involved,
    suggested_integration = excluded.suggested_integration,
    sample_code = excluded.sample_code,
    reasoning = excluded.reasoning,
    actual_files = excluded.actual_files,
    confidence = excluded.confidence,
    withdrawn_at = excluded.withdrawn_at
where not s.is_dismissed

-- name: app_state_load
-- The previous analyzed event and switching habits per user, and which connector suggestions ($2,
-- by key) stand: neither withdrawn nor dismissed.
select u.user_id, s.last_app, s.last_at, s.habit_at, s.habits, l.live
from unnest($1::uuid[]) as u(user_id)
left join floyo_pipeline.app_workflow_state s on s.user_id = u.user_id
left join lateral (
  select array_agg(g.suggestion_key) as live
  from public.suggestions g
  where g.user_id = u.user_id and g.suggestion_key = any($2::text[])
    and g.withdrawn_at is null and not g.is_dismissed
) l on true

-- name: app_state_save
insert into floyo_pipeline.app_workflow_state as s (user_id, last_app, last_at, habit_at, habits)
select x.user_id, x.last_app, x.last_at, x.habit_at, x.habits
from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::jsonb[])
  as x(user_id, last_app, last_at, habit_at, habits)
on conflict (user_id) do update
set last_app = excluded.last_app, last_at = excluded.last_at, habit_at = excluded.habit_at,
    habits = excluded.habits

-- name: duration_windows_load
select w.user_id, w.app_id, w.event_type, w.durations, w.baseline_runs, w.regression_open,
       w.baseline_log_sum, w.baseline_log_squares, w.recent_log_sum, w.recent_log_squares
from floyo_pipeline.duration_windows w
join unnest($1::uuid[], $2::text[], $3::text[]) as k(user_id, app_id, event_type)
  on w.user_id = k.user_id and w.app_id = k.app_id and w.event_type = k.event_type

-- name: duration_windows_save
insert into floyo_pipeline.duration_windows as w
  (user_id, app_id, event_type, durations, baseline_runs, regression_open, last_at,
   baseline_log_sum, baseline_log_squares, recent_log_sum, recent_log_squares)
select x.user_id, x.app_id, x.event_type, string_to_array(x.durations, ',')::integer[],
       x.baseline_runs, x.regression_open, x.last_at, x.bs, x.bq, x.rs, x.rq
from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::boolean[], $7::timestamptz[],
            $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
  as x(user_id, app_id, event_type, durations, baseline_runs, regression_open, last_at, bs, bq, rs, rq)
on conflict (user_id, app_id, event_type) do update
set durations = excluded.durations, baseline_runs = excluded.baseline_runs,
    regression_open = excluded.regression_open, last_at = greatest(w.last_at, excluded.last_at),
    baseline_log_sum = excluded.baseline_log_sum, baseline_log_squares = excluded.baseline_log_squares,
    recent_log_sum = excluded.recent_log_sum, recent_log_squares = excluded.recent_log_squares

-- name: metric_daily_load
select d.source, d.metric, d.day, d.total, d.samples, d.m2, d.alert_open
from floyo_pipeline.metric_daily d
join unnest($1::text[], $2::text[], $3::date[]) as k(source, metric, day)
  on d.source = k.source and d.metric = k.metric and d.day = k.day

-- name: metric_daily_save
insert into floyo_pipeline.metric_daily as d (source, metric, day, total, samples, m2, alert_open)
select x.source, x.metric, x.day, x.total, x.samples, x.m2, x.alert_open
from unnest($1::text[], $2::text[], $3::date[], $4::float8[], $5::bigint[], $6::float8[], $7::boolean[])
  as x(source, metric, day, total, samples, m2, alert_open)
on conflict (source, metric, day) do update
set total = excluded.total, samples = excluded.samples, m2 = excluded.m2, alert_open = excluded.alert_open

-- name: insights_upsert
-- first_seen stays the time the insight was first raised; a resolved insight keeps the severity it had
-- while open; the rest follows the latest evaluation.
insert into public.insights as i
  (user_id, kind, severity, status, title, body, evidence, fingerprint, first_seen, last_seen)
select x.user_id, x.kind, x.severity, x.status, x.title, x.body, x.evidence, x.fingerprint,
       x.first_seen, x.last_seen
from jsonb_to_recordset($1::jsonb) as x(
  user_id uuid, kind text, severity text, status text, title text, body text, evidence jsonb,
  fingerprint text, first_seen timestamptz, last_seen timestamptz)
on conflict (fingerprint) do update
set severity = case when excluded.status = 'resolved' then i.severity else excluded.severity end,
    status = excluded.status,
    title = excluded.title,
    body = excluded.body,
    evidence = excluded.evidence,
    last_seen = greatest(i.last_seen, excluded.last_seen)
