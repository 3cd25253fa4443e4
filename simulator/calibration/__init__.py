"""Calibration: measured operator latencies -> profiles -> calibrated step-time models.

``sources`` reads AIConfigurator-style parquet trees and Vidur CSVs, ``fit`` fits a
profile's correction grids and measures their error, ``profile`` reads and writes profile
files, ``select`` picks the profile a scenario uses (or the nearest measured
architecture's), ``check`` compares predictions with a user's measurements, and
``validate`` replays a measured serving benchmark.
"""
