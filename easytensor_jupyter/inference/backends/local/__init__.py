"""Model versions in sandboxed worker processes on this machine."""
