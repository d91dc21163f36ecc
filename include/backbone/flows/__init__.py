"""The business flows as plain functions: records in, records out; DAG files only wire them."""
