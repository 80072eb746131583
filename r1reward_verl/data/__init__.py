"""Data: preference pairs from their sources (``sources``, ``records``) into verl parquet (``outputs``, ``pairs``,
with token counting in ``tokens`` and a worker pool in ``workers``), the cold-start annotator (``annotate``) and
the bundled sample (``make_sample``, ``sample_data/``). ``python -m preprocess.pairs`` etc. are thin entry points."""
