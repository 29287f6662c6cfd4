-- Connector suggestions for habits, not for volume: app_workflows keeps decayed switching statistics
-- per user, and a connector suggestion whose habit has faded is withdrawn rather than deleted.
-- Idempotent: every statement is safe to run twice.

-- Set by the pipeline (event time) when the evidence behind a suggestion is gone; null while it stands.
-- Users cannot change it: their update grant covers only is_dismissed, is_applied and viewed_at.
alter table public.suggestions add column if not exists withdrawn_at timestamptz;

-- app_workflows: the user's decayed switch counts, as of habit_at (the latest switch's event time):
-- {"switches": n, "apps": {"vscode": [arrivals, departures], ...}, "pairs": {"vscode->slack": n, ...}}.
-- The public relationships.weight stays a plain count of transitions.
alter table floyo_pipeline.app_workflow_state add column if not exists habit_at timestamptz;
alter table floyo_pipeline.app_workflow_state
  add column if not exists habits jsonb not null default '{}'::jsonb;
alter table floyo_pipeline.app_workflow_state drop constraint if exists app_workflow_state_habits_object;
alter table floyo_pipeline.app_workflow_state
  add constraint app_workflow_state_habits_object check (jsonb_typeof(habits) = 'object');
