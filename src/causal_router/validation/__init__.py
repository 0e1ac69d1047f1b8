"""The data contract: one catalogue of named checks (:mod:`.catalogue`), run by :mod:`.contract`
(``split_logs`` quarantines a log), reported by :mod:`.report`, mirrored as a Great Expectations
suite (:mod:`.gx_suite`) and written out by the pipeline's validate step (:mod:`.stage`)."""
