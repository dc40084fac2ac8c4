"""What the jobs share: argument parsing, output files, grids, report tables and plots, load generation.
Nothing here is a job of its own."""
