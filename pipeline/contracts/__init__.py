"""The platform's contracts: the ADR-009 event catalogue, topic specs, the rendition graph, the AsyncAPI document.

The framework core (the rest of `pipeline/`) never imports this package; the platform's packages
(storage, stages, orchestration, operations) do. Topics reach the core through the `darkroom.topics`
entry point.
"""
