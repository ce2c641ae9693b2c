"""The one shared layer: resource types, validation, subjects, store, API client and controller SDK."""

from bus import cancellation

cancellation.install()  # before anything waits on a reply: see bus/cancellation.py
