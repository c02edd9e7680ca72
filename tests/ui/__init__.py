"""Tests of the web UI: the Dagster webserver and what a browser shows of it."""
