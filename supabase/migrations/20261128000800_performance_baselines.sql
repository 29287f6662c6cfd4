-- performance: regressions against a held baseline, daily metrics judged against their own spread.
-- Idempotent: every statement is safe to run twice.

-- duration_windows.durations now holds the baseline runs, then the recent runs (oldest first);
-- baseline_runs says how many of them are the baseline, which is held while regression_open.
-- rank_u2 and rank_ties are the rank test's statistics of those two samples, kept with them so that
-- a batch need not recompute them (null: not compared yet, computed when first needed).
alter table floyo_pipeline.duration_windows
  add column if not exists baseline_runs integer not null default 0 check (baseline_runs >= 0),
  add column if not exists rank_u2 integer,
  add column if not exists rank_ties bigint;

-- A regression opened by the first rule (newer 20 against older 20 of the last 40 runs) keeps its
-- older half as the held baseline. Only such rows are open without a baseline, so this runs once.
update floyo_pipeline.duration_windows
set baseline_runs = cardinality(durations) / 2
where regression_open and baseline_runs = 0;

-- metric_daily: the day's sum of squared deviations from its mean (Welford's M2), for its spread.
-- Days summed before this migration start with 0 (no spread known).
alter table floyo_pipeline.metric_daily
  add column if not exists m2 double precision not null default 0 check (m2 >= 0);
