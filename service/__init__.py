"""Wiring of socialcare: settings, the message bus, pipeline workers and the command line."""
