"""Model backends: one module each; base.py holds the protocol and result types."""
