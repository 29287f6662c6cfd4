-- The analyzers' own state across batches, in the service's private schema, written in the same
-- transaction as their outputs and checkpoints. Idempotent: every statement is safe to run twice.

-- file_patterns: the user's previous file event, and the most recent distinct paths per catalog
-- extension ({"py": ["/newest.py", ...]}) for the suggestions' actual_files.
create table if not exists floyo_pipeline.file_pattern_state (
  user_id uuid primary key references auth.users (id) on delete cascade,
  last_path text not null,
  last_at timestamptz not null,
  recent_paths jsonb not null default '{}'::jsonb check (jsonb_typeof(recent_paths) = 'object')
);

-- app_workflows: the user's previous analyzed event.
create table if not exists floyo_pipeline.app_workflow_state (
  user_id uuid primary key references auth.users (id) on delete cascade,
  last_app text not null,
  last_at timestamptz not null
);

-- performance: the last durations (oldest first) per user, app and event type, and whether a
-- regression insight is open for them.
create table if not exists floyo_pipeline.duration_windows (
  user_id uuid not null references auth.users (id) on delete cascade,
  app_id text not null,
  event_type text not null,
  durations integer[] not null,
  regression_open boolean not null default false,
  last_at timestamptz not null,
  primary key (user_id, app_id, event_type)
);

-- performance: daily (UTC) sum and count per metrics_log source and metric, and whether the day's
-- rule insight is open.
create table if not exists floyo_pipeline.metric_daily (
  source text not null,
  metric text not null,
  day date not null,
  total double precision not null,
  samples bigint not null check (samples > 0),
  alert_open boolean not null default false,
  primary key (source, metric, day)
);

grant select, insert, update, delete on
  floyo_pipeline.file_pattern_state,
  floyo_pipeline.app_workflow_state,
  floyo_pipeline.duration_windows,
  floyo_pipeline.metric_daily
  to floyo_pipeline_worker;
