"""Small utilities with no knowledge of events: the bottom layer, importing nothing of `app`."""
