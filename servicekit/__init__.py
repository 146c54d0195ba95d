"""Plumbing every long-lived midbrain service shares: signals, HTTP serving, backoff.

Sits below the tiers and above the wire contract; imports neither.
"""
