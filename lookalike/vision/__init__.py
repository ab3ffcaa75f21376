"""The vision code: ResNet50's weights, photo preprocessing, the pool5 embedder, int8, the category head.

The indexing job and the classifier service both embed through these modules, so a catalogue
photo and a shopper's upload go through exactly the same code.
"""
