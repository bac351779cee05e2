"""What the service talks to and through: Kling's API, the archive's storage, downloads and outbound
HTTP with their SSRF guard, logs and metrics. None of it knows tasks' rules."""
