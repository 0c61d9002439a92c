"""GridOps spatial domain: placement, import/export, persistence. Never imports FastAPI."""
