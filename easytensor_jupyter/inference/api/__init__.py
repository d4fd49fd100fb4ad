"""The HTTP surface: routes, the predict fast path, schemas, error shapes, uploads, auth."""
