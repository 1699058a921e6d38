"""The bundled recording the dashboard replays when no broker is configured (see README.md here)."""
