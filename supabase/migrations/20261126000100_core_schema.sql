-- Streams (written by clients), privacy settings (written by the app) and outputs (written by the
-- pipeline). Idempotent: every statement is safe to run twice.
--
-- Each table is closed where it is created: row level security on (no policy yet, so no API role
-- sees a row) and Supabase's default grants to anon and authenticated revoked from the table and
-- its identity sequence. Should a later migration fail on a real project, nothing is left open;
-- 20261126000300_row_level_security.sql then grants what each role may do, under policies.

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
alter table public.telemetry_events enable row level security;
revoke all on public.telemetry_events from anon, authenticated;
revoke all on sequence public.telemetry_events_id_seq from anon, authenticated;

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
alter table public.metrics_log enable row level security;
revoke all on public.metrics_log from anon, authenticated;
revoke all on sequence public.metrics_log_id_seq from anon, authenticated;

create index if not exists metrics_log_pipeline_idx
  on public.metrics_log (pipeline_txid, id);

create table if not exists public.privacy_prefs (
  user_id uuid primary key references auth.users (id) on delete cascade,
  consent_given boolean not null default false,
  monitoring_enabled boolean not null default true,
  data_retention_days integer not null default 14 check (data_retention_days between 1 and 3650),
  updated_at timestamptz not null default now()
);
alter table public.privacy_prefs enable row level security;
revoke all on public.privacy_prefs from anon, authenticated;

create table if not exists public.app_allowlist (
  user_id uuid not null references auth.users (id) on delete cascade,
  app_id text not null check (app_id <> ''),
  enabled boolean not null default true,
  scope text not null default 'metadata_only'
    check (scope in ('metadata_only', 'metadata_plus_usage', 'none')),
  updated_at timestamptz not null default now(),
  primary key (user_id, app_id)
);
alter table public.app_allowlist enable row level security;
revoke all on public.app_allowlist from anon, authenticated;

create table if not exists public.signal_toggles (
  user_id uuid not null references auth.users (id) on delete cascade,
  signal_key text not null check (signal_key <> ''),
  enabled boolean not null default true,
  updated_at timestamptz not null default now(),
  primary key (user_id, signal_key)
);
alter table public.signal_toggles enable row level security;
revoke all on public.signal_toggles from anon, authenticated;

create table if not exists public.patterns (
  id bigint generated always as identity primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  file_extension text not null check (file_extension <> ''),
  count integer not null default 0 check (count >= 0),
  last_used timestamptz not null,
  tools text[] not null default '{}',
  unique (user_id, file_extension)
);
alter table public.patterns enable row level security;
revoke all on public.patterns from anon, authenticated;
revoke all on sequence public.patterns_id_seq from anon, authenticated;

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
alter table public.relationships enable row level security;
revoke all on public.relationships from anon, authenticated;
revoke all on sequence public.relationships_id_seq from anon, authenticated;

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
alter table public.insights enable row level security;
revoke all on public.insights from anon, authenticated;
revoke all on sequence public.insights_id_seq from anon, authenticated;

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
alter table public.suggestions enable row level security;
revoke all on public.suggestions from anon, authenticated;
revoke all on sequence public.suggestions_id_seq from anon, authenticated;
