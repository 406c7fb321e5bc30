"""Local services memlake runs on one machine, and deployment material for a cluster."""
