"""Access control: API keys with scopes and allowed sources, their cache, rate limits.

Sits beside `sources`, `privacy` and `contracts`: pure rules over values (`keys`), and a
process-wide cache of the stored keys (`store`) on top of `storage.keys`.
"""
