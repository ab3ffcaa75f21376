"""How good an index version is: photo search, words and shoppers' feedback, each a report.

Run through `make eval` (or `lookalike eval`). Reads an index version through the shared
libraries, never through a service's code; the labelled queries it ships live in `data/`.
"""
