"""The benchmark against peer task queues: ``python bench/run.py`` (or ``make bench``)."""
