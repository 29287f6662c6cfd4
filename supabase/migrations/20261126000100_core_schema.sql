-- Streams (written by clients), privacy settings (written by the app) and outputs (written by the
-- pipeline). Idempotent: every statement is safe to run twice.

create table if not exists public.telemetry_events (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  occurred_at timestamptz not null,
  app_id text not null check (app_id <> ''),
  event_type text not null check (event_type <> ''),
  file_path text,
  duration_ms integer check (duration_ms >= 0),
  metadata jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  -- The inserting top-level transaction: with the id, the order the pipeline reads rows in.
  pipeline_txid xid8 not null default pg_current_xact_id()
);

-- Append-only in practice (new transactions get larger ids), so inserts stay on the rightmost leaf:
-- the whole ingest cost of the pipeline is this index, the column and one NOTIFY per statement.
create index if not exists telemetry_events_pipeline_idx
  on public.telemetry_events (pipeline_txid, id);
create index if not exists telemetry_events_user_time_idx
  on public.telemetry_events (user_id, occurred_at);

create table if not exists public.metrics_log (
  id bigint generated always as identity primary key,
  ts timestamptz not null default now(),
  source text not null
    check (source in ('vercel', 'client', 'telemetry', 'supabase', 'expo', 'ci', 'pipeline')),
  metric jsonb not null check (jsonb_typeof(metric) = 'object'),
  created_at timestamptz not null default now(),
  pipeline_txid xid8 not null default pg_current_xact_id()
);

create index if not exists metrics_log_pipeline_idx
  on public.metrics_log (pipeline_txid, id);

create table if not exists public.privacy_prefs (
  user_id uuid primary key references auth.users (id) on delete cascade,
  consent_given boolean not null default false,
  monitoring_enabled boolean not null default true,
  data_retention_days integer not null default 14 check (data_retention_days between 1 and 3650),
  updated_at timestamptz not null default now()
);

create table if not exists public.app_allowlist (
  user_id uuid not null references auth.users (id) on delete cascade,
  app_id text not null check (app_id <> ''),
  enabled boolean not null default true,
  scope text not null default 'metadata_only'
    check (scope in ('metadata_only', 'metadata_plus_usage', 'none')),
  updated_at timestamptz not null default now(),
  primary key (user_id, app_id)
);

create table if not exists public.signal_toggles (
  user_id uuid not null references auth.users (id) on delete cascade,
  signal_key text not null check (signal_key <> ''),
  enabled boolean not null default true,
  updated_at timestamptz not null default now(),
  primary key (user_id, signal_key)
);

create table if not exists public.patterns (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  file_extension text not null check (file_extension <> ''),
  count integer not null default 0 check (count >= 0),
  last_used timestamptz not null,
  tools text[] not null default '{}',
  unique (user_id, file_extension)
);

create table if not exists public.relationships (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  source text not null,
  target text not null,
  relation_type text not null check (relation_type in ('accessed_together', 'app_transition')),
  weight integer not null default 0 check (weight >= 0),
  last_seen timestamptz not null,
  unique (user_id, source, target, relation_type)
);

create table if not exists public.insights (
  id bigint generated always as identity primary key,
  user_id uuid references auth.users (id) on delete cascade,
  kind text not null check (kind <> ''),
  severity text not null check (severity in ('info', 'warning', 'critical')),
  status text not null default 'open' check (status in ('open', 'resolved')),
  title text not null,
  body text not null,
  evidence jsonb not null default '{}'::jsonb check (jsonb_typeof(evidence) = 'object'),
  fingerprint text not null unique,
  first_seen timestamptz not null,
  last_seen timestamptz not null
);

create index if not exists insights_user_idx on public.insights (user_id);

create table if not exists public.suggestions (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  suggestion_key text not null,
  trigger text not null,
  tools_involved text[] not null default '{}',
  suggested_integration text not null,
  sample_code text not null default '',
  reasoning text not null,
  actual_files text[] not null default '{}',
  confidence double precision not null check (confidence >= 0 and confidence <= 1),
  is_dismissed boolean not null default false,
  is_applied boolean not null default false,
  created_at timestamptz not null,
  viewed_at timestamptz,
  unique (user_id, suggestion_key)
);
