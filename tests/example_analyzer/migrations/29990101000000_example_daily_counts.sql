-- example_daily_counts: events per user and UTC day, in the service's private schema (the API
-- roles never reach it). Idempotent: every statement is safe to run twice.
create table if not exists floyo_pipeline.example_daily_counts (
  user_id uuid not null references auth.users (id) on delete cascade,
  day date not null,
  events bigint not null check (events > 0),
  last_at timestamptz not null,
  primary key (user_id, day)
);

grant select, insert, update, delete on floyo_pipeline.example_daily_counts to floyo_pipeline_worker;
