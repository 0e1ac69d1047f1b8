"""Data contracts: schema checks, loaders and log simulation."""
