"""The bottom layer: the values every other layer speaks in.

`events` holds what an event is at each point of its way (decoded `Candidate`, validated
`CloudEvent`, `AnonymizedEvent`, the `QuarantineRecord` of a rejected one); `outcomes`
holds what Sluice answers about it (`Outcome`, `Rejection`, `Violation`, `EventResult`).
This package imports nothing of `app` but `app.errors` (the error codes), and every
layer above imports it, the way every arroyo strategy imports `arroyo/types.py`.
"""
