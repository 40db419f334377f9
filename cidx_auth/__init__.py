"""cidx-auth: JWT token management for the CIDX command-line client."""

__version__ = "0.1.0"
