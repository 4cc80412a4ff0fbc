"""API routers; each module exposes build_router(ctx)."""
