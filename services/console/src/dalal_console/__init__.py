"""Dalal console: a web page per part of the trading day, over the services' own routes."""
