-- performance: the duration rule compares mean log durations (Welch's t test) instead of ranks.
-- Idempotent: every statement is safe to run twice.

-- The rank statistics go; in their place the exact sums of the two samples' log durations (in
-- millionths of a natural log, see consumers/durations.py) and of their squares, so that a batch
-- updates the test in O(1) per run. Null: not summed yet; the pipeline sums the stored durations the
-- next time the series gets a run (the durations, baseline_runs and regression_open are unchanged, so
-- an open regression keeps its held baseline).
alter table floyo_pipeline.duration_windows
  drop column if exists rank_u2,
  drop column if exists rank_ties,
  add column if not exists baseline_log_sum bigint,
  add column if not exists baseline_log_squares bigint,
  add column if not exists recent_log_sum bigint,
  add column if not exists recent_log_squares bigint;

alter table floyo_pipeline.duration_windows drop constraint if exists duration_windows_log_sums;
alter table floyo_pipeline.duration_windows add constraint duration_windows_log_sums check (
  num_nulls(baseline_log_sum, baseline_log_squares, recent_log_sum, recent_log_squares) in (0, 4)
  and coalesce(least(baseline_log_sum, baseline_log_squares, recent_log_sum, recent_log_squares), 0) >= 0
);
