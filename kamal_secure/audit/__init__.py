"""Audits: static rules over the config, live host checks, drift."""
