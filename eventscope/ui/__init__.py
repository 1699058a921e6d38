"""The dashboard's shared UI code, which the pages (``eventscope.pages``) use to render.

* :mod:`eventscope.ui.session` — this run's config, the store's query layer (one per store and
  process) and the clusters the reader chose in the sidebar;
* :mod:`eventscope.ui.data` — what the pages show, read through the query layer for the
  chosen clusters;
* :mod:`eventscope.ui.format` — times, durations, numbers, Markdown-escaped names and
  status colours, as text for people;
* :mod:`eventscope.ui.widgets` — the sidebar (cluster selector, sources' health), links
  between pages, charts and the empty state.
"""
