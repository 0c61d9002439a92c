"""GridOps adapters: HTTP API (FastAPI) and the `gridops` command line."""
