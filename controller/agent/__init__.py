"""Code that runs on target hosts (stdlib only, shipped by Ansible's script module)."""
