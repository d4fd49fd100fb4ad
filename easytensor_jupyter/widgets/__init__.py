"""The inline query panel: ask a deployed model for predictions without leaving the notebook.

Plain ipywidgets and no custom JavaScript, so it renders wherever ipywidgets 8 does:
JupyterLab 4, Notebook 7 and VS Code.
"""

from __future__ import annotations

from easytensor_jupyter.widgets._panel import QueryPanel, show_panel

__all__ = ["QueryPanel", "show_panel"]
