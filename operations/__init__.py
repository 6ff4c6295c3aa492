"""Running darkroom: the local stack without Docker (`devstack/`), the fleet supervisor (`fleet/`), the demo."""
