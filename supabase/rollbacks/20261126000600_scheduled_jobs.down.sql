-- Rollback of 20261126000600_scheduled_jobs.sql.
drop table if exists floyo_pipeline.job_runs;
