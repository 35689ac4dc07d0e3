"""Batch: reading and writing data, the champion ready to score, scoring, profiles, monitoring."""
