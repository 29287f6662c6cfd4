-- Scheduled jobs: claims (one replica per job and period) and the pipeline's own metrics snapshot.

-- name: job_claim
-- A new period of job $1, for owner $3 (`<replica id>#<incarnation>`, the process).
insert into floyo_pipeline.job_runs (job, period_start, replica_id)
values ($1, $2, $3)
on conflict (job, period_start) do nothing
returning job

-- name: job_take_over
-- Period $2 of job $1 still 'running' under an owner that is no longer alive: no live row of it in
-- floyo_pipeline.replicas (each process heartbeats its own every lease tick and removes it when it
-- stops; a restart under the same replica id removes its predecessors'). The result is kept: the
-- metrics snapshot finds there the row its killed run may already have written.
update floyo_pipeline.job_runs j
set replica_id = $3, claimed_at = now(), finished_at = null, error_class = null
where j.job = $1 and j.period_start = $2 and j.status = 'running' and j.replica_id <> $3
  and not exists (
    select 1 from floyo_pipeline.replicas r where r.replica_id = j.replica_id and r.expires_at > now()
  )
returning j.claimed_at

-- name: job_abandon_older
-- Earlier periods of job $1 left 'running' by owners no longer alive: failed (they are not run late).
update floyo_pipeline.job_runs j
set status = 'failed', finished_at = now(), error_class = 'OwnerDied'
where j.job = $1 and j.period_start < $2 and j.status = 'running'
  and not exists (
    select 1 from floyo_pipeline.replicas r where r.replica_id = j.replica_id and r.expires_at > now()
  )

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

-- name: snapshot_of_period
-- Locks the period's claim (two runs of one period take turns) and returns the snapshot row an
-- earlier run of the period already wrote, if any.
select m.id, m.metric
from floyo_pipeline.job_runs j
left join public.metrics_log m on m.id = (j.result ->> 'metrics_log_id')::bigint and m.source = 'pipeline'
where j.job = 'metrics_snapshot' and j.period_start = $1
for update of j

-- name: snapshot_record
update floyo_pipeline.job_runs
set result = jsonb_build_object('metrics_log_id', $2::bigint)
where job = 'metrics_snapshot' and period_start = $1

-- name: job_last_success
select job, extract(epoch from max(finished_at))::float8 as finished
from floyo_pipeline.job_runs
where status = 'done'
group by job
