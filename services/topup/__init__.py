"""TopUp Analytics: the package all three services share (settings, data, privacy, telemetry)."""

__version__ = "0.1.0"
