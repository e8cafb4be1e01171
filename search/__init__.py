"""The VRT-Spike search service: data, measurement, search spaces, studies and export."""
