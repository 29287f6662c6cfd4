-- Checks the service runs once, before it starts.

-- name: excess_privileges
-- The login role itself and every role it is a member of, directly or not (it could SET ROLE to
-- any of them), that is a superuser or bypasses row level security.
select r.rolname as role_name, r.rolsuper as superuser, r.rolbypassrls as bypassrls,
       r.rolname = current_user as is_login_role
from pg_roles r
where (r.rolsuper or r.rolbypassrls) and pg_has_role(current_user, r.oid, 'MEMBER')
order by r.rolname <> current_user, r.rolname
