"""How models are used to answer an item: single model (more to come: cascade, delegate, agent)."""
