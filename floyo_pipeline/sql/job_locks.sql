-- The scheduled jobs' named locks (floyo_pipeline/job_locks.py): rows of floyo_pipeline.locks.

-- name: job_lock_ensure
-- The row of lock $1 (the migration seeds it; this puts it back should it be missing). DO NOTHING
-- never waits for a session holding the row.
insert into floyo_pipeline.locks (name) values ($1) on conflict (name) do nothing

-- name: job_lock_try
select name from floyo_pipeline.locks where name = $1 for update skip locked

-- name: job_lock_wait
select name from floyo_pipeline.locks where name = $1 for update
