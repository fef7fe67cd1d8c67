"""Generated ads: written back to the volume and recorded in Dagster."""
