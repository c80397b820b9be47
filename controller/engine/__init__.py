"""The engine: orchestrates plans over adapters. Never imports the CLI."""
