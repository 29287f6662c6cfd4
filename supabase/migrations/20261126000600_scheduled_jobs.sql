-- Scheduled jobs (retention, metrics snapshot): one row per job and period. A replica runs a job
-- for a period only if its insert of that row wins (insert ... on conflict do nothing), so N
-- replicas run each job once per period.

create table if not exists floyo_pipeline.job_runs (
  job text not null,
  period_start timestamptz not null,
  replica_id text not null,
  status text not null default 'running' check (status in ('running', 'done', 'failed')),
  claimed_at timestamptz not null default now(),
  finished_at timestamptz,
  result jsonb,
  error_class text,
  primary key (job, period_start)
);

create index if not exists job_runs_recent_idx on floyo_pipeline.job_runs (job, claimed_at desc);

grant select, insert, update, delete on floyo_pipeline.job_runs to floyo_pipeline_worker;
