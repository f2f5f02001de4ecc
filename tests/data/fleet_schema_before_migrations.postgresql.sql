-- The fleet server's schema before migrations existed, as create_all made it on
-- postgresql (fleet_server models at main 2a37c07, every table a running server loaded,
-- captured with SQLAlchemy's create_mock_engine + Base.metadata.create_all). Frozen:
-- tests/test_migrations.py loads it and upgrades it, as an installed server of that
-- time would be upgraded.

CREATE TABLE model_versions (
	id SERIAL NOT NULL,
	model VARCHAR(64) NOT NULL,
	slot VARCHAR(32) NOT NULL,
	version INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	length INTEGER NOT NULL,
	target_path VARCHAR(255) NOT NULL,
	targets_version INTEGER NOT NULL,
	published_at FLOAT NOT NULL,
	published_by VARCHAR(64),
	listed BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_model_version UNIQUE (model, version),
	UNIQUE (target_path)
);

CREATE INDEX ix_model_versions_model ON model_versions (model);

CREATE TABLE delta_artifacts (
	id SERIAL NOT NULL,
	model VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	base_version INTEGER NOT NULL,
	target_path VARCHAR(255) NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	length INTEGER NOT NULL,
	delta_format VARCHAR(32) NOT NULL,
	created_at FLOAT NOT NULL,
	listed BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (target_path)
);

CREATE INDEX ix_delta_artifacts_model ON delta_artifacts (model);

CREATE TABLE devices (
	device_id VARCHAR(64) NOT NULL,
	first_seen FLOAT NOT NULL,
	last_seen FLOAT,
	state VARCHAR(16) NOT NULL,
	agent_version VARCHAR(64) NOT NULL,
	started_at FLOAT,
	health VARCHAR(16) NOT NULL,
	models JSON NOT NULL,
	last_status_at FLOAT,
	metrics JSON NOT NULL,
	last_metrics_ts FLOAT,
	last_ota_slot VARCHAR(32),
	last_ota_state VARCHAR(32),
	last_ota_to_version INTEGER,
	last_ota_reason VARCHAR(64),
	last_ota_detail TEXT,
	last_ota_ts FLOAT,
	last_ota_rollout_id VARCHAR(64),
	group_name VARCHAR(64),
	tags JSON NOT NULL,
	PRIMARY KEY (device_id)
);

CREATE INDEX ix_devices_group_name ON devices (group_name);

CREATE TABLE desired_states (
	device_id VARCHAR(64) NOT NULL,
	revision INTEGER NOT NULL,
	document JSON NOT NULL,
	updated_at FLOAT NOT NULL,
	published_revision INTEGER NOT NULL,
	rollout_id VARCHAR(64),
	PRIMARY KEY (device_id)
);

CREATE INDEX ix_desired_states_rollout_id ON desired_states (rollout_id);

CREATE TABLE ota_events (
	id SERIAL NOT NULL,
	msg_id VARCHAR(64) NOT NULL,
	device_id VARCHAR(64) NOT NULL,
	seq INTEGER NOT NULL,
	ts FLOAT NOT NULL,
	received_at FLOAT NOT NULL,
	slot VARCHAR(32) NOT NULL,
	state VARCHAR(32) NOT NULL,
	from_version INTEGER,
	to_version INTEGER,
	rollout_id VARCHAR(64),
	artifact VARCHAR(16),
	bytes_downloaded INTEGER,
	reason VARCHAR(64),
	detail TEXT,
	is_historical BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (msg_id)
);

CREATE INDEX ix_ota_events_rollout_id ON ota_events (rollout_id);

CREATE INDEX ix_ota_events_device_id ON ota_events (device_id);

CREATE TABLE audit_log (
	id SERIAL NOT NULL,
	at FLOAT NOT NULL,
	actor VARCHAR(64) NOT NULL,
	action VARCHAR(64) NOT NULL,
	subject VARCHAR(255) NOT NULL,
	detail JSON NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_log_at ON audit_log (at);

CREATE TABLE api_tokens (
	name VARCHAR(64) NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	scopes JSON NOT NULL,
	created_at FLOAT NOT NULL,
	created_by VARCHAR(64) NOT NULL,
	revoked_at FLOAT,
	revoked_by VARCHAR(64),
	PRIMARY KEY (name)
);

CREATE UNIQUE INDEX ix_api_tokens_sha256 ON api_tokens (sha256);

CREATE TABLE server_replicas (
	client_id VARCHAR(128) NOT NULL,
	instance VARCHAR(32) NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	api VARCHAR(255) NOT NULL,
	started_at FLOAT NOT NULL,
	heartbeat_at FLOAT NOT NULL,
	counters JSON NOT NULL,
	sharing VARCHAR(64) NOT NULL,
	PRIMARY KEY (client_id)
);

CREATE TABLE device_metric_samples (
	id SERIAL NOT NULL,
	device_id VARCHAR(64) NOT NULL,
	resolution INTEGER NOT NULL,
	ts FLOAT NOT NULL,
	uptime_s FLOAT NOT NULL,
	lines_in INTEGER NOT NULL,
	dropped INTEGER NOT NULL,
	errors INTEGER NOT NULL,
	p99_ms FLOAT,
	rss_mb FLOAT,
	spool_depth FLOAT,
	PRIMARY KEY (id)
);

CREATE INDEX ix_device_metric_samples_ts ON device_metric_samples (ts);

CREATE INDEX ix_metric_device_res_ts ON device_metric_samples (device_id, resolution, ts);

CREATE TABLE device_alerts (
	id SERIAL NOT NULL,
	msg_id VARCHAR(64) NOT NULL,
	device_id VARCHAR(64) NOT NULL,
	ts FLOAT NOT NULL,
	device_ts FLOAT NOT NULL,
	slot VARCHAR(32) NOT NULL,
	model_version INTEGER NOT NULL,
	label VARCHAR(64) NOT NULL,
	score FLOAT NOT NULL,
	reason VARCHAR(255) NOT NULL,
	source VARCHAR(128) NOT NULL,
	text TEXT NOT NULL,
	repeats INTEGER NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (msg_id)
);

CREATE INDEX ix_device_alerts_device_id ON device_alerts (device_id);

CREATE INDEX ix_device_alerts_ts ON device_alerts (ts);

CREATE TABLE rollouts (
	id VARCHAR(64) NOT NULL,
	model VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	slot VARCHAR(32) NOT NULL,
	selector JSON NOT NULL,
	strategy JSON NOT NULL,
	stage_names JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	stage INTEGER NOT NULL,
	stage_started_at FLOAT,
	stage_settled_at FLOAT,
	halt_reason VARCHAR(32),
	halt_detail TEXT,
	failure_baseline INTEGER NOT NULL,
	outcome_baseline INTEGER NOT NULL,
	accepted_stage INTEGER,
	created_at FLOAT NOT NULL,
	created_by VARCHAR(64) NOT NULL,
	updated_at FLOAT NOT NULL,
	finished_at FLOAT,
	log JSON NOT NULL,
	row_version INTEGER NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_rollouts_status ON rollouts (status);

CREATE TABLE rollout_devices (
	rollout_id VARCHAR(64) NOT NULL,
	device_id VARCHAR(64) NOT NULL,
	stage INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	reason VARCHAR(64),
	detail TEXT,
	attempts INTEGER NOT NULL,
	notified_at FLOAT,
	changed_at FLOAT,
	retry_at FLOAT,
	last_event_ts FLOAT,
	last_event_seq INTEGER,
	from_version INTEGER,
	rollback_sent BOOLEAN NOT NULL,
	PRIMARY KEY (rollout_id, device_id)
);

CREATE INDEX ix_rollout_devices_device_id ON rollout_devices (device_id);

CREATE TABLE server_leases (
	name VARCHAR(64) NOT NULL,
	owner VARCHAR(128) NOT NULL,
	until FLOAT NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE enrollment_tokens (
	token_id VARCHAR(16) NOT NULL,
	token_sha256 VARCHAR(64) NOT NULL,
	device_id VARCHAR(64),
	group_name VARCHAR(64),
	tags JSON NOT NULL,
	created_at FLOAT NOT NULL,
	created_by VARCHAR(64) NOT NULL,
	expires_at FLOAT NOT NULL,
	used_at FLOAT,
	used_by VARCHAR(64),
	cancelled_at FLOAT,
	PRIMARY KEY (token_id),
	UNIQUE (token_sha256)
);

CREATE TABLE device_identities (
	device_id VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	enrolled_at FLOAT NOT NULL,
	enrolled_with VARCHAR(16),
	renewed_at FLOAT,
	revoked_at FLOAT,
	revoked_by VARCHAR(64),
	revoke_reason TEXT,
	PRIMARY KEY (device_id)
);

CREATE TABLE issued_certificates (
	serial VARCHAR(48) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	subject VARCHAR(255) NOT NULL,
	device_id VARCHAR(64),
	sha256 VARCHAR(64) NOT NULL,
	key_type VARCHAR(32) NOT NULL,
	not_before FLOAT NOT NULL,
	not_after FLOAT NOT NULL,
	issued_at FLOAT NOT NULL,
	revoked_at FLOAT,
	revoke_reason TEXT,
	PRIMARY KEY (serial)
);

CREATE INDEX ix_issued_certificates_revoked_at ON issued_certificates (revoked_at);

CREATE INDEX ix_issued_certificates_device_id ON issued_certificates (device_id);

CREATE TABLE certificate_renewals (
	previous_serial VARCHAR(48) NOT NULL,
	serial VARCHAR(48) NOT NULL,
	device_id VARCHAR(64) NOT NULL,
	key_sha256 VARCHAR(64) NOT NULL,
	certificate_pem TEXT NOT NULL,
	renewed_at FLOAT NOT NULL,
	PRIMARY KEY (previous_serial)
);

CREATE INDEX ix_certificate_renewals_device_id ON certificate_renewals (device_id);

CREATE TABLE console_sessions (
	id_sha256 VARCHAR(64) NOT NULL,
	token_sha256 VARCHAR(64) NOT NULL,
	csrf VARCHAR(64) NOT NULL,
	created_at FLOAT NOT NULL,
	last_used FLOAT NOT NULL,
	PRIMARY KEY (id_sha256)
);

CREATE INDEX ix_console_sessions_last_used ON console_sessions (last_used);

CREATE INDEX ix_console_sessions_token_sha256 ON console_sessions (token_sha256);

-- Rows as the server of that time wrote them: they must survive the upgrade.
INSERT INTO devices (device_id, first_seen, last_seen, state, agent_version, started_at, health,
    models, last_status_at, metrics, last_metrics_ts, last_ota_slot, last_ota_state,
    last_ota_to_version, last_ota_reason, last_ota_detail, last_ota_ts, last_ota_rollout_id,
    group_name, tags)
VALUES ('old-dev-1', 1000.0, 1100.0, 'online', '0.9.0', 990.0, 'ok',
    '[{"slot": "logs", "name": "nano", "version": 1, "label": "v1", "runtime": "onnxruntime", "sha256": "aa"}]',
    1100.0, '{}', NULL, 'logs', 'failed', 2, 'unavailable', 'network down', 1050.0, NULL,
    'lab', '["shelf-a"]');
INSERT INTO ota_events (msg_id, device_id, seq, ts, received_at, slot, state, from_version,
    to_version, rollout_id, artifact, bytes_downloaded, reason, detail, is_historical)
VALUES ('m-old-1', 'old-dev-1', 3, 1050.0, 1051.0, 'logs', 'failed', 1, 2, NULL, NULL, NULL,
    'unavailable', 'network down', FALSE);
INSERT INTO model_versions (model, slot, version, sha256, length, target_path, targets_version,
    published_at, published_by, listed)
VALUES ('nano', 'logs', 1, 'aa', 123, 'models/nano/1/nano-1.nfb', 2, 900.0, 'ops', TRUE);
INSERT INTO audit_log (at, actor, action, subject, detail)
VALUES (900.0, 'ops', 'publish', 'nano v1', '{}');
