"""The cidx-auth command line (placeholder until the CLI issue)."""
