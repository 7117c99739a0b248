"""Plain-Python helpers behind the Streamlit dashboard (``app.py``, ``pages/``) that need only ``cascade``.

Nothing here imports Streamlit or :mod:`analysis`, so every helper is tested without a
browser. (What the pages need from :mod:`analysis` is in ``pages/_analysis.py``; a run's
progress, status and files are read through :mod:`cascade.runfolder`.)

- :mod:`.settings`  — where things live (runs folder, demo backbone, device, threads), from the environment;
- :mod:`.weights`   — the time-boxed pretrained-weights check and the demo-mode decision;
- :mod:`.datasets`  — the sidebar's data source: its config, loading, and the Overview's summary;
- :mod:`.models`    — building / loading models cheaply (text embeddings cached on disk);
- :mod:`.sources`   — model sources of the analysis pages (a checkpoint or an untrained model), σ slider values;
- :mod:`.uploads`   — validating uploaded images (size, type, content, corruption);
- :mod:`.inspect`   — per-image, per-stage predictions for the Inspect page;
- :mod:`.charts`    — small plotly figures of one image's prediction (dashboard-only views);
- :mod:`.runs`      — reading run folders and ablation tables for the pages (no pickle, no traversal);
- :mod:`.trainform` — what the Train page's form asks for, and the run config it becomes;
- :mod:`.jobs`      — the process-wide registry of background training jobs;
- :mod:`.worker`    — the training worker a job runs (``python -m cascade.dashboard.worker``).
"""
