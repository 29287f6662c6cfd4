-- The pipeline reads users' privacy settings from its own copy in the private schema, kept by
-- triggers in the same transaction as every change to public.privacy_prefs, app_allowlist and
-- signal_toggles. Why: those tables are the app's, and the UPDATE / DELETE privileges users need on
-- them also let any user `lock table ... in access exclusive mode`, which row level security does not
-- stop; a batch that read them would then wait for that user, and so would every other user's rows.
-- No API role can reach the copies. They hold only what the gate and retention need, one row per
-- allowed app and per switched-off signal, so the gate looks up the batch's own keys and never loads
-- all of a user's values. Idempotent: every statement is safe to run twice.

create table if not exists floyo_pipeline.user_settings (
  user_id uuid primary key references auth.users (id) on delete cascade,
  monitored boolean not null,
  data_retention_days integer not null
);

create table if not exists floyo_pipeline.user_apps (
  user_id uuid not null references auth.users (id) on delete cascade,
  app_id text not null,
  primary key (user_id, app_id)
);

create table if not exists floyo_pipeline.user_signals_off (
  user_id uuid not null references auth.users (id) on delete cascade,
  signal_key text not null,
  primary key (user_id, signal_key)
);

grant select on floyo_pipeline.user_settings, floyo_pipeline.user_apps, floyo_pipeline.user_signals_off
  to floyo_pipeline_worker;

-- Security definer: users change their settings as themselves, and the copies are out of their reach.
create or replace function floyo_pipeline.copy_privacy_prefs() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    delete from floyo_pipeline.user_settings where user_id = old.user_id;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    insert into floyo_pipeline.user_settings (user_id, monitored, data_retention_days)
    values (new.user_id, new.consent_given and new.monitoring_enabled, new.data_retention_days)
    on conflict (user_id) do update
    set monitored = excluded.monitored, data_retention_days = excluded.data_retention_days;
  end if;
  return null;
end
$$;

create or replace function floyo_pipeline.copy_app_allowlist() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    delete from floyo_pipeline.user_apps where user_id = old.user_id and app_id = old.app_id;
  end if;
  if tg_op in ('INSERT', 'UPDATE') and new.enabled and new.scope <> 'none' then
    insert into floyo_pipeline.user_apps (user_id, app_id) values (new.user_id, new.app_id)
    on conflict do nothing;
  end if;
  return null;
end
$$;

create or replace function floyo_pipeline.copy_signal_toggles() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    delete from floyo_pipeline.user_signals_off where user_id = old.user_id and signal_key = old.signal_key;
  end if;
  if tg_op in ('INSERT', 'UPDATE') and not new.enabled then
    insert into floyo_pipeline.user_signals_off (user_id, signal_key) values (new.user_id, new.signal_key)
    on conflict do nothing;
  end if;
  return null;
end
$$;

-- TRUNCATE (only the owner can) empties the copy too.
create or replace function floyo_pipeline.copy_truncated() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  case tg_table_name
    when 'privacy_prefs' then delete from floyo_pipeline.user_settings;
    when 'app_allowlist' then delete from floyo_pipeline.user_apps;
    when 'signal_toggles' then delete from floyo_pipeline.user_signals_off;
  end case;
  return null;
end
$$;

revoke all on function floyo_pipeline.copy_privacy_prefs(), floyo_pipeline.copy_app_allowlist(),
  floyo_pipeline.copy_signal_toggles(), floyo_pipeline.copy_truncated() from public;

drop trigger if exists privacy_prefs_copy on public.privacy_prefs;
create trigger privacy_prefs_copy after insert or update or delete on public.privacy_prefs
  for each row execute function floyo_pipeline.copy_privacy_prefs();
drop trigger if exists app_allowlist_copy on public.app_allowlist;
create trigger app_allowlist_copy after insert or update or delete on public.app_allowlist
  for each row execute function floyo_pipeline.copy_app_allowlist();
drop trigger if exists signal_toggles_copy on public.signal_toggles;
create trigger signal_toggles_copy after insert or update or delete on public.signal_toggles
  for each row execute function floyo_pipeline.copy_signal_toggles();

drop trigger if exists privacy_prefs_copy_truncate on public.privacy_prefs;
create trigger privacy_prefs_copy_truncate after truncate on public.privacy_prefs
  for each statement execute function floyo_pipeline.copy_truncated();
drop trigger if exists app_allowlist_copy_truncate on public.app_allowlist;
create trigger app_allowlist_copy_truncate after truncate on public.app_allowlist
  for each statement execute function floyo_pipeline.copy_truncated();
drop trigger if exists signal_toggles_copy_truncate on public.signal_toggles;
create trigger signal_toggles_copy_truncate after truncate on public.signal_toggles
  for each statement execute function floyo_pipeline.copy_truncated();

-- What the settings say now.
insert into floyo_pipeline.user_settings (user_id, monitored, data_retention_days)
select user_id, consent_given and monitoring_enabled, data_retention_days from public.privacy_prefs
on conflict (user_id) do update
set monitored = excluded.monitored, data_retention_days = excluded.data_retention_days;
insert into floyo_pipeline.user_apps (user_id, app_id)
select user_id, app_id from public.app_allowlist where enabled and scope <> 'none'
on conflict do nothing;
insert into floyo_pipeline.user_signals_off (user_id, signal_key)
select user_id, signal_key from public.signal_toggles where not enabled
on conflict do nothing;
