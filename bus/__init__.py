"""The one shared layer: resource types, validation, subjects, store, API client and controller SDK."""
