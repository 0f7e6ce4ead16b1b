"""CLI commands (filled in by the issue that owns them)."""
