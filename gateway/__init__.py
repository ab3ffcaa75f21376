"""The public gateway: the JSON API and the web page in front of the classifier and similarity services."""
