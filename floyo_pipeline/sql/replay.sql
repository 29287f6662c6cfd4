-- Replay (floyo_pipeline/operations.py): moving a consumer's checkpoints back; the per-stream
-- replay query is rendered from templates/stream.sql.

-- name: replay_has_checkpoints
select exists (select from floyo_pipeline.checkpoints where consumer = $1)

-- name: replay_held_leases
select count(*) from floyo_pipeline.checkpoints
where consumer = $1 and lease_owner is not null and lease_expires_at > now()

-- name: replay_from_start
update floyo_pipeline.checkpoints
set position_txid = '0'::xid8, position_id = 0, pending = '{}'::jsonb,
    lease_owner = null, lease_expires_at = null,
    lease_epoch = lease_epoch + 1, updated_at = now()
where consumer = $1
