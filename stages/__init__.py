"""One stage per folder, plus the shared imaging helpers."""
