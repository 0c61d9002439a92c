"""HTTP routers: thin adapters from requests to `gis` functions."""
