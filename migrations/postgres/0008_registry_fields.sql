-- Fields Astro's clients read on organizations, workspaces and deployments
-- (issue 13, item 5): who created and who last changed each one (Astro's
-- createdBy / updatedBy, kept like an API token's), a workspace's CI/CD
-- default for new deployments, a deployment's type and whether it enforces
-- CI/CD deploys.
--
-- Rows made before this migration take their creator from the audit
-- trail's create event (every create is recorded since 0004), and were
-- last changed by the same subject (nothing could change them before).
-- A row with no such event keeps the subject id 'unrecorded'.
-- The same columns as migrations/sqlite/0008 (text COLLATE "C", flags BOOLEAN).

ALTER TABLE organizations ADD COLUMN created_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE organizations ADD COLUMN created_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE organizations ADD COLUMN created_by_name TEXT COLLATE "C";
ALTER TABLE organizations ADD COLUMN updated_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE organizations ADD COLUMN updated_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE organizations ADD COLUMN updated_by_name TEXT COLLATE "C";
UPDATE organizations SET (created_by_id, created_by_type, created_by_name) =
    (SELECT e.actor_id, e.actor_type, e.actor_name FROM audit_events e
    WHERE e.action = 'organization.create' AND e.target_id = organizations.id
    ORDER BY e.created_at, e.id LIMIT 1)
WHERE EXISTS (SELECT 1 FROM audit_events e
    WHERE e.action = 'organization.create' AND e.target_id = organizations.id);
UPDATE organizations SET updated_by_id = created_by_id,
    updated_by_type = created_by_type, updated_by_name = created_by_name;

ALTER TABLE workspaces ADD COLUMN created_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE workspaces ADD COLUMN created_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE workspaces ADD COLUMN created_by_name TEXT COLLATE "C";
ALTER TABLE workspaces ADD COLUMN updated_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE workspaces ADD COLUMN updated_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE workspaces ADD COLUMN updated_by_name TEXT COLLATE "C";
ALTER TABLE workspaces ADD COLUMN cicd_enforced_default BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE workspaces SET (created_by_id, created_by_type, created_by_name) =
    (SELECT e.actor_id, e.actor_type, e.actor_name FROM audit_events e
    WHERE e.action = 'workspace.create' AND e.target_id = workspaces.id
    ORDER BY e.created_at, e.id LIMIT 1)
WHERE EXISTS (SELECT 1 FROM audit_events e
    WHERE e.action = 'workspace.create' AND e.target_id = workspaces.id);
UPDATE workspaces SET updated_by_id = created_by_id,
    updated_by_type = created_by_type, updated_by_name = created_by_name;

ALTER TABLE deployments ADD COLUMN created_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE deployments ADD COLUMN created_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE deployments ADD COLUMN created_by_name TEXT COLLATE "C";
ALTER TABLE deployments ADD COLUMN updated_by_id TEXT COLLATE "C" NOT NULL DEFAULT 'unrecorded';
ALTER TABLE deployments ADD COLUMN updated_by_type TEXT COLLATE "C" NOT NULL DEFAULT 'SERVICEKEY';
ALTER TABLE deployments ADD COLUMN updated_by_name TEXT COLLATE "C";
ALTER TABLE deployments ADD COLUMN deployment_type TEXT COLLATE "C" NOT NULL DEFAULT 'STANDARD'
    CHECK (deployment_type IN ('STANDARD', 'DEDICATED', 'HYBRID'));
ALTER TABLE deployments ADD COLUMN is_cicd_enforced BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE deployments SET (created_by_id, created_by_type, created_by_name) =
    (SELECT e.actor_id, e.actor_type, e.actor_name FROM audit_events e
    WHERE e.action = 'deployment.create' AND e.target_id = deployments.id
    ORDER BY e.created_at, e.id LIMIT 1)
WHERE EXISTS (SELECT 1 FROM audit_events e
    WHERE e.action = 'deployment.create' AND e.target_id = deployments.id);
UPDATE deployments SET updated_by_id = created_by_id,
    updated_by_type = created_by_type, updated_by_name = created_by_name;
