"""ResNet50 classifier service: one forward pass per image gives the category and the embedding."""
