-- Scheduled jobs: claims (one replica per job and period) and the pipeline's own metrics snapshot.

-- name: job_claim
insert into floyo_pipeline.job_runs (job, period_start, replica_id)
values ($1, $2, $3)
on conflict (job, period_start) do nothing
returning job

-- name: job_finish
update floyo_pipeline.job_runs
set status = $4, finished_at = now(), result = $5::jsonb, error_class = $6
where job = $1 and period_start = $2 and replica_id = $3

-- name: job_runs_prune
delete from floyo_pipeline.job_runs where claimed_at < now() - interval '90 days'

-- name: snapshot_totals
select
  (select coalesce(sum(processed_total), 0)::bigint from floyo_pipeline.checkpoints) as processed_total,
  (select count(*) from floyo_pipeline.dead_letters where status = 'open') as dead_letters_open,
  (select count(*) from floyo_pipeline.dead_letters where $1::timestamptz is null or created_at >= $1)
    as dead_letters_new,
  (select count(*) from floyo_pipeline.replicas where expires_at > now()) as replicas_live,
  now() as taken_at

-- name: snapshot_previous
select ts, metric from public.metrics_log
where source = 'pipeline' and metric ? 'events_processed_total'
order by ts desc, id desc
limit 1

-- name: snapshot_insert
insert into public.metrics_log (ts, source, metric) values ($1, 'pipeline', $2::jsonb) returning id

-- name: job_last_success
select job, extract(epoch from max(finished_at))::float8 as finished
from floyo_pipeline.job_runs
where status = 'done'
group by job
