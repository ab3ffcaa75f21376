"""The re-index job a store runs after adding, replacing or removing reference images."""
