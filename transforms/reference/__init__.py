"""Reference data shipped with the package: municipality numbers over time and the code lists."""
