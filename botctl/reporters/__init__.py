"""Reporters: render the results computed by the commands, as rich tables for people or as JSON."""
