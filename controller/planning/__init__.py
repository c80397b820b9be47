"""Pure planning: functions from models to plans and rendered files. No side effects."""
