"""Resource monitoring: the sampler of CPU, memory and GPU use (sampler), and the per-case window over
its samples (cases)."""
