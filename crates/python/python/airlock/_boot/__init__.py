"""Files bound read-only into sandboxes at /airlock/boot (see _airlock_runner)."""
