"""Local stand-ins for cloud services, started on the host (no Docker needed)."""
