"""On-call: people, schedules (layers of rotations), overrides, and who is on call when."""
