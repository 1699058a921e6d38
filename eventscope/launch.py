"""How ``eventscope dashboard`` and ``eventscope demo`` start Streamlit on the dashboard's script."""
from __future__ import annotations

import sys
from pathlib import Path

# The dashboard's Streamlit script, inside the package in a checkout and when installed.
APP_SCRIPT = Path(__file__).resolve().parent / "app.py"

#: how long a browser tab that lost its connection keeps its session (filters, selection) in
#: the server; Streamlit's default of 120 s held ~100 MB more on a big cluster's pages
DISCONNECTED_SESSION_TTL_S = 30


def dashboard_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves the dashboard on ``host``:``port``, from any directory."""
    # The settings of .streamlit/config.toml, given on the command line: an installed
    # eventscope runs from directories that have no such file.
    return [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--theme.base", "light",
            "--server.disconnectedSessionTTL", str(DISCONNECTED_SESSION_TTL_S),
            # an operator's dashboard does not reload its code when files change: no watcher
            # polling thousands of module files, and a package upgrade applies on restart
            "--server.fileWatcherType", "none"]
