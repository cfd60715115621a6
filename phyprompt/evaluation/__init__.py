"""Evaluation: prompt sets, render-and-judge with a content-hash cache, statistics, tables, charts, report.

`python -m phyprompt eval` (phyprompt/commands/eval.py) drives it. Modules, each small and light to import:

- `cache`: a content-hash store of JSON records and video files (also used by training);
- `prompt_sets`: VideoPhy-2 test files (CSV/Parquet/JSONL), the hard subset, a fixed sample, plain lists;
- `runner`: refine, render, judge, each batched, cached and resumable, one model in memory at a time;
- `statistics`: success rates, bootstrap intervals, paired differences;
- `tables`, `charts`, `report`: what a run writes for people (text, CSV, JSON, PNG, Markdown).
"""
