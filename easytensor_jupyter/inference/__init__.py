"""The inference server: HTTP app, store, auth, worker pool and the model runtime."""
