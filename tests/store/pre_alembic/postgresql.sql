-- The schema `create_all` made before migrations (commit a795cc5, the last release
-- without Alembic), for tests/store/test_migrate.py. Frozen: never regenerate.
CREATE TABLE backup_locks (
	component VARCHAR(80) NOT NULL,
	holder VARCHAR(300) NOT NULL,
	backup_id VARCHAR(160) NOT NULL,
	acquired_at TIMESTAMP WITH TIME ZONE NOT NULL,
	heartbeat_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (component)
);

CREATE TABLE backups (
	id VARCHAR(160) NOT NULL,
	component VARCHAR(80) NOT NULL,
	env VARCHAR(40) NOT NULL,
	status VARCHAR(12) NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE NOT NULL,
	finished_at TIMESTAMP WITH TIME ZONE,
	duration_s FLOAT,
	blob_name VARCHAR(400) NOT NULL,
	manifest_name VARCHAR(400) NOT NULL,
	size_bytes INTEGER,
	sha256 VARCHAR(64),
	manifest_sha256 VARCHAR(64),
	manifest JSON NOT NULL,
	error TEXT NOT NULL,
	failed_step VARCHAR(40) NOT NULL,
	verified_at TIMESTAMP WITH TIME ZONE,
	pruned_at TIMESTAMP WITH TIME ZONE,
	host VARCHAR(200) NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_backups_component ON backups (component);

CREATE INDEX ix_backups_started_at ON backups (started_at);

CREATE TABLE check_state (
	check_id VARCHAR(120) NOT NULL,
	state VARCHAR(10) NOT NULL,
	ok_streak INTEGER NOT NULL,
	degraded_streak INTEGER NOT NULL,
	bad_streak INTEGER NOT NULL,
	fail_streak INTEGER NOT NULL,
	since TIMESTAMP WITH TIME ZONE,
	last_status VARCHAR(10) NOT NULL,
	last_message TEXT NOT NULL,
	last_run_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (check_id)
);

CREATE TABLE drills (
	id SERIAL NOT NULL,
	component VARCHAR(80) NOT NULL,
	backup_id VARCHAR(160) NOT NULL,
	status VARCHAR(12) NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE NOT NULL,
	finished_at TIMESTAMP WITH TIME ZONE,
	duration_s FLOAT,
	restore_s FLOAT,
	failed_step VARCHAR(40) NOT NULL,
	message TEXT NOT NULL,
	steps JSON NOT NULL,
	scratch_db VARCHAR(120) NOT NULL,
	on_demand BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_drills_component ON drills (component);

CREATE INDEX ix_drills_started_at ON drills (started_at);

CREATE TABLE incidents (
	id SERIAL NOT NULL,
	dedup_key VARCHAR(200) NOT NULL,
	check_id VARCHAR(120) NOT NULL,
	env VARCHAR(40) NOT NULL,
	kind VARCHAR(40) NOT NULL,
	name VARCHAR(200) NOT NULL,
	severity VARCHAR(10) NOT NULL,
	labels JSON NOT NULL,
	runbook TEXT,
	state VARCHAR(14) NOT NULL,
	status VARCHAR(10) NOT NULL,
	message TEXT NOT NULL,
	opened_at TIMESTAMP WITH TIME ZONE NOT NULL,
	since TIMESTAMP WITH TIME ZONE NOT NULL,
	acknowledged_at TIMESTAMP WITH TIME ZONE,
	acknowledged_by VARCHAR(120),
	resolved_at TIMESTAMP WITH TIME ZONE,
	notified BOOLEAN NOT NULL,
	silenced_by INTEGER,
	last_notified_at TIMESTAMP WITH TIME ZONE,
	last_notified_message TEXT NOT NULL,
	slack_channel VARCHAR(80),
	slack_ts VARCHAR(40),
	jira_key VARCHAR(40),
	PRIMARY KEY (id)
);

CREATE INDEX ix_incidents_key_state ON incidents (dedup_key, state);

CREATE TABLE notification_pauses (
	channel VARCHAR(20) NOT NULL,
	until TIMESTAMP WITH TIME ZONE NOT NULL,
	reason TEXT NOT NULL,
	PRIMARY KEY (channel)
);

CREATE TABLE results (
	id SERIAL NOT NULL,
	check_id VARCHAR(120) NOT NULL,
	kind VARCHAR(40) NOT NULL,
	env VARCHAR(40) NOT NULL,
	status VARCHAR(10) NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE NOT NULL,
	duration_s FLOAT NOT NULL,
	message TEXT NOT NULL,
	metrics JSON NOT NULL,
	details JSON NOT NULL,
	steps JSON NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_results_check_started ON results (check_id, started_at);

CREATE INDEX ix_results_started_at ON results (started_at);

CREATE TABLE results_hourly (
	check_id VARCHAR(120) NOT NULL,
	hour TIMESTAMP WITH TIME ZONE NOT NULL,
	runs INTEGER NOT NULL,
	ok INTEGER NOT NULL,
	degraded INTEGER NOT NULL,
	failing INTEGER NOT NULL,
	error INTEGER NOT NULL,
	duration_sum FLOAT NOT NULL,
	duration_max FLOAT NOT NULL,
	PRIMARY KEY (check_id, hour)
);

CREATE TABLE silences (
	id SERIAL NOT NULL,
	check_id VARCHAR(120),
	env VARCHAR(40),
	labels JSON NOT NULL,
	starts_at TIMESTAMP WITH TIME ZONE,
	ends_at TIMESTAMP WITH TIME ZONE,
	cron VARCHAR(120),
	duration_s FLOAT,
	comment TEXT NOT NULL,
	author VARCHAR(120) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	expired_at TIMESTAMP WITH TIME ZONE,
	source VARCHAR(10) NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE incident_events (
	id SERIAL NOT NULL,
	incident_id INTEGER NOT NULL,
	at TIMESTAMP WITH TIME ZONE NOT NULL,
	kind VARCHAR(30) NOT NULL,
	message TEXT NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(incident_id) REFERENCES incidents (id)
);

CREATE INDEX ix_incident_events_incident_id ON incident_events (incident_id);

CREATE TABLE notification_outbox (
	id SERIAL NOT NULL,
	incident_id INTEGER NOT NULL,
	channel VARCHAR(20) NOT NULL,
	action VARCHAR(20) NOT NULL,
	payload JSON NOT NULL,
	idempotency_key VARCHAR(80) NOT NULL,
	state VARCHAR(10) NOT NULL,
	attempts INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
	sent_at TIMESTAMP WITH TIME ZONE,
	last_error TEXT NOT NULL,
	response JSON NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(incident_id) REFERENCES incidents (id),
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_notification_outbox_incident_id ON notification_outbox (incident_id);

CREATE INDEX ix_outbox_state_channel ON notification_outbox (state, channel);
