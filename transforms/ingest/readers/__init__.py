"""Readers for the four input formats; each turns one source file into staged rows."""
