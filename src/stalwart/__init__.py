"""stalwart: background tasks for Python that are never lost."""
