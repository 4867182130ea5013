"""The lab host's PowerShell engine: a documented subset of Windows PowerShell 5.1 (docs/lab-engine.md)."""
