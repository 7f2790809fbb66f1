"""Registers this package's components with lopt through the `lopt` entry point."""
