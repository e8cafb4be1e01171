"""VRT-Spike: the VRT backbone with a spike-camera branch and chunked temporal fusion."""
