"""What-if sweeps and capacity planning over ``simulator.api.simulate``.

- ``spec``: axes over scenario knobs (CLI lists or TOML) expanded to scenarios;
- ``store``: one parquet row file per scenario, keyed, written atomically (resumable);
- ``runner``: local processes or Ray;
- ``plan``: cheapest configuration meeting an SLO, and the highest rate a fleet sustains.
"""
