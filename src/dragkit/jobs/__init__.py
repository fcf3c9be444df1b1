"""Jobs built on the engine: one headless drag and its files (:mod:`~dragkit.jobs.drag`), many cases run
serially or on a Ray cluster into a resumable JSONL (:mod:`~dragkit.jobs.execute`), batch drags
(:mod:`~dragkit.jobs.batch`) and the evaluation protocols (:mod:`~dragkit.jobs.landmarks`).
"""
