"""Plain-Python helpers behind the Streamlit dashboard (``app.py``, ``pages/``).

Nothing here imports Streamlit, so every helper is tested without a browser:

- :mod:`.settings` — where things live (runs folder, demo backbone), from the environment;
- :mod:`.weights`  — the time-boxed pretrained-weights check and the demo-mode decision;
- :mod:`.models`   — building / loading models cheaply (text embeddings cached on disk);
- :mod:`.uploads`  — validating uploaded images (size, type, content, corruption);
- :mod:`.runs`     — reading run folders and ablation tables (no pickle, no traversal);
- :mod:`.jobs`     — the process-wide registry of background training jobs;
- :mod:`.progress` — turning ``metrics.jsonl`` into curves, phase and progress;
- :mod:`.inspect`  — per-image, per-stage predictions for the Inspect page;
- :mod:`.sigma`    — cached block features and exact σ re-evaluation for the σ tuner.
"""
