-- Deployments in steps: per-app deploy settings, pending deployments, the
-- strategy and the progress of each process type.

-- +goose Up
-- deploy_strategy is how the app's releases replace each other;
-- deploy_timeout (seconds) how long a new job has to come up, NULL for the
-- controller's default.
ALTER TABLE apps ADD COLUMN deploy_strategy text NOT NULL DEFAULT 'one-by-one'
    CHECK (deploy_strategy IN ('one-by-one', 'all-at-once'));
ALTER TABLE apps ADD COLUMN deploy_timeout integer CHECK (deploy_timeout BETWEEN 1 AND 3600);

-- status: pending (waits for the app's active deployment), running,
-- rolling_back (the old release is brought back to its counts before the
-- new one's jobs stop), complete, failed, rolled_back, superseded (a
-- pending deployment that a newer release replaced before it started).
-- from_running: the old release ran jobs when the deployment started, so
-- the new release replaces them in steps and a failure rolls back to it.
-- step counts the changes of the row and of its processes (a conditional
-- update makes concurrent deployers take turns). Deployments made before
-- this migration ran their releases side by side: all-at-once.
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('pending', 'running', 'rolling_back', 'complete', 'failed', 'rolled_back', 'superseded'));
ALTER TABLE deployments ADD COLUMN strategy text NOT NULL DEFAULT 'all-at-once'
    CHECK (strategy IN ('one-by-one', 'all-at-once'));
ALTER TABLE deployments ADD COLUMN timeout integer CHECK (timeout BETWEEN 1 AND 3600);
ALTER TABLE deployments ADD COLUMN from_running boolean NOT NULL DEFAULT false;
ALTER TABLE deployments ADD COLUMN step integer NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN started_at timestamptz;
ALTER TABLE deployments ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE deployments ADD COLUMN rollback_at timestamptz;
-- A failed deployment names the job that failed and its last lines of
-- output.
ALTER TABLE deployments ADD COLUMN failed_job text NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN last_lines jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(last_lines) = 'array');
UPDATE deployments SET started_at = created_at, updated_at = COALESCE(finished_at, created_at);
-- A deployment that failed before this migration kept the old release
-- running: it rolled back.
UPDATE deployments SET status = 'rolled_back' WHERE status = 'failed';
DROP INDEX deployments_one_running;
CREATE UNIQUE INDEX deployments_one_active ON deployments (app_id) WHERE status IN ('running', 'rolling_back');
CREATE UNIQUE INDEX deployments_one_pending ON deployments (app_id) WHERE status = 'pending';
CREATE INDEX deployments_app_created ON deployments (app_id, created_at DESC);

-- The step of each process type of a deployment. started is how many of
-- the new release's jobs are asked for so far, old_left how many of the
-- old release's (the etcd formation counts are the smaller of these and
-- the formations' counts while the deployment is active); step_at is when
-- started last grew: the newest jobs have the deployment's timeout from
-- then to come up. up and want are the progress at the last look.
CREATE TABLE deployment_processes (
    deployment_id uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    type          text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_-]{0,29}$'),
    started       integer NOT NULL DEFAULT 0 CHECK (started >= 0),
    old_left      integer NOT NULL DEFAULT 0 CHECK (old_left >= 0),
    up            integer NOT NULL DEFAULT 0 CHECK (up >= 0),
    want          integer NOT NULL DEFAULT 0 CHECK (want >= 0),
    step_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, type)
);

-- +goose Down
DROP TABLE deployment_processes;
DROP INDEX deployments_app_created;
DROP INDEX deployments_one_pending;
DROP INDEX deployments_one_active;
UPDATE deployments SET status = 'superseded' WHERE status = 'pending';
UPDATE deployments SET status = 'running' WHERE status = 'rolling_back';
UPDATE deployments SET status = 'failed' WHERE status = 'rolled_back';
CREATE UNIQUE INDEX deployments_one_running ON deployments (app_id) WHERE status = 'running';
ALTER TABLE deployments DROP COLUMN last_lines;
ALTER TABLE deployments DROP COLUMN failed_job;
ALTER TABLE deployments DROP COLUMN rollback_at;
ALTER TABLE deployments DROP COLUMN updated_at;
ALTER TABLE deployments DROP COLUMN started_at;
ALTER TABLE deployments DROP COLUMN step;
ALTER TABLE deployments DROP COLUMN from_running;
ALTER TABLE deployments DROP COLUMN timeout;
ALTER TABLE deployments DROP COLUMN strategy;
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('running', 'complete', 'failed', 'superseded'));
ALTER TABLE apps DROP COLUMN deploy_timeout;
ALTER TABLE apps DROP COLUMN deploy_strategy;
