"""relctl: an Ansible-integrated release and continuity controller."""

from __future__ import annotations

__version__ = "0.1.0"
