"""The lab: a simulated Windows WinRM host behind real proxies (see docs/lab.md)."""
