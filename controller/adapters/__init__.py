"""Adapters: the only modules that touch processes, SSH, Ansible, HAProxy and the network."""
