"""`make bench`: Sluice's committed throughput, measured against raw COPY on the same database.

One run: a scratch database → the COPY ceiling → the service under concurrent batched
clients → the ratio of the two, PASS or FAIL against `--min-ratio`. See bench/README.md.
"""
