"""Training: config, loop, resumable state, distributed helpers."""
