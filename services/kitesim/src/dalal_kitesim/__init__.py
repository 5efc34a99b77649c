"""kitesim: a Kite Connect v3 compatible exchange simulator."""
