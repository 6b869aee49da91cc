"""Click, view and download tracking: signed tokens, the tracking server, scanner classification."""
