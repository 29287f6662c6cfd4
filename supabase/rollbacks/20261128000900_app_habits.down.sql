-- Reverse of 20261128000900_app_habits.sql: drop the habit statistics and the withdrawn flag.

alter table floyo_pipeline.app_workflow_state drop constraint if exists app_workflow_state_habits_object;
alter table floyo_pipeline.app_workflow_state drop column if exists habits;
alter table floyo_pipeline.app_workflow_state drop column if exists habit_at;
alter table public.suggestions drop column if exists withdrawn_at;
