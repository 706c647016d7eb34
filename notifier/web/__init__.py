"""The HTTP listener: health now; the API and the page extend this app."""
