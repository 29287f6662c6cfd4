-- Reverse of 20261128001200_settings_copy.sql: the pipeline reads the settings tables themselves again.

drop trigger if exists privacy_prefs_copy on public.privacy_prefs;
drop trigger if exists app_allowlist_copy on public.app_allowlist;
drop trigger if exists signal_toggles_copy on public.signal_toggles;
drop trigger if exists privacy_prefs_copy_truncate on public.privacy_prefs;
drop trigger if exists app_allowlist_copy_truncate on public.app_allowlist;
drop trigger if exists signal_toggles_copy_truncate on public.signal_toggles;
drop function if exists floyo_pipeline.copy_privacy_prefs();
drop function if exists floyo_pipeline.copy_app_allowlist();
drop function if exists floyo_pipeline.copy_signal_toggles();
drop function if exists floyo_pipeline.copy_truncated();
drop table if exists floyo_pipeline.user_signals_off;
drop table if exists floyo_pipeline.user_apps;
drop table if exists floyo_pipeline.user_settings;
