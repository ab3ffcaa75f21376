"""A store's Google Merchant Center product feed as a catalogue: parsing, category mapping, photo downloads."""
