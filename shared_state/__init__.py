"""State shared between processes outside the database (Redis), neither web/ nor tasks/ owns it."""
