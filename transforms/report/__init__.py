"""What people read: the analyst warehouse, run summaries, Markdown tables and charts."""
