"""The thin CLI: parse, call one service function, render (rich for people, --json for CI)."""
