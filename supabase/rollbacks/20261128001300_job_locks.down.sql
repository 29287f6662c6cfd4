-- Reverse of 20261128001300_job_locks.sql: the jobs' lock rows go (code older than it takes
-- advisory locks instead).
drop table if exists floyo_pipeline.locks;
