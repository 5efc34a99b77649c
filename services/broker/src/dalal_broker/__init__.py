"""broker-gateway: the only service that talks to Kite about orders."""
