"""Running a stage: one run's context (`context`: settings, catalog, cache, writer), the
call itself (`call`: load or compute each stage), and what a call would do (`status`)."""
