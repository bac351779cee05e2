"""The service across hosts: network namespaces on this machine, one per host (see hosts.py)."""
