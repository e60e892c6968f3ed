"""The process service."""
